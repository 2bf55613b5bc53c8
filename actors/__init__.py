"""Long-lived roles of the actor system: plain classes that the launcher makes remote with ray.remote."""

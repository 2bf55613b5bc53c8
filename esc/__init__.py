"""Domain layer of RLFF-ESC: schemas, config, data, prompts, model loading. Never imports Ray."""

# ruff: noqa: E501  (regex phrases read better unbroken than split at the line limit)
"""The crisis lexicon: regex phrases by category, read by `esc.safety.check_message`.

The categories follow the Columbia Suicide Severity Rating Scale (C-SSRS): a wish to be dead, active
suicidal thoughts, a method, intent, a plan, and suicidal behaviour (an attempt, an interrupted or
aborted one, or a preparatory act), plus non-suicidal self-harm, abuse of the writer or of a child,
threats from others, and danger to others. docs/safety.md measures recall per category and the
false-alarm rate on the labelled probe set `tests/fixtures/crisis_probes.jsonl`.

Patterns run on normalised text (see `esc.safety.normalise`): lower case, straight apostrophes,
single spaces, and "im"/"ive"/"ill"/"id" spelled "i'm"/"i've"/"i'll"/"i'd". Write contractions as
`don'?t` so "dont" also matches. Keep each phrase about the writer's own situation: an idiom guard
(`BENIGN`) drops hits that overlap a harmless idiom or a denial.
"""

from __future__ import annotations

# People who may be the source of harm (abuse, threats).
PERSON = (
    r"(?:he|she|they|someone|somebody|my (?:\w+ )?(?:husband|wife|partner|boyfriend|girlfriend|bf|gf|ex|dad|father"
    r"|mom|mum|mother|stepdad|stepfather|stepmom|stepmother|step ?parent|parents?|uncle|aunt|brother|sister"
    r"|cousin|grandpa|grandfather|grandma|roommate|flatmate|boss|coach|teacher|landlord|neighbou?r|pastor"
    r"|babysitter|foster \w+))"
)
# Ways of killing or hurting oneself, in the first person ("kill myself", "end my life").
SELF_KILL = (
    r"(?:kill(?:ing)? my ?self|end(?:ing)? (?:my (?:own )?life|it all)|tak(?:e|ing) my (?:own )?life"
    r"|hang(?:ing)? my ?self|commit(?:ting)? suicide|suicide)"
)
DRUGS = (
    r"(?:pills|tablets|meds|medications?|painkillers|sleeping pills|tylenol|paracetamol|acetaminophen"
    r"|advil|ibuprofen|aspirin|antidepressants|oxy\w*|opioids|xanax|benzos|insulin|heroin|fentanyl)"
)
LETHAL_PLACE = (
    r"(?:bridge|quarry|roof|rooftop|cliff|building|overpass|balcony|tower|ledge|parking garage|train tracks"
    r"|tracks|highway|window)"
)
WEEKDAY = r"(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday|tonight|tomorrow|this weekend)"
PEOPLE = (
    r"(?:him|her|them|someone|somebody|everyone|everybody|people|my (?:\w+ )?(?:boss|manager|coworkers?"
    r"|colleagues?|dad|father|mom|mother|stepdad|stepmom|brother|sister|husband|wife|partner|boyfriend"
    r"|girlfriend|ex|roommate|neighbou?r|teacher|classmates?|kids?|son|daughter|baby|family|parents?"
    r"|landlord|friends?)|(?:the|those|these|all the) (?:kids|people|guys|girls|students|bullies|girl|guy|boy|man"
    r"|woman|crowd))"
)
HARM_VERB = r"(?:kill|stab|shoot|hurt|poison|strangle|choke|beat|burn|attack|murder)"
LEXICON: dict[str, tuple[str, ...]] = {
    # C-SSRS 1: a wish to be dead, or not to wake up, without thoughts of killing oneself.
    "wish_to_be_dead": (
        r"\b(?:wish|want|hope|rather|wouldn'?t mind if|don'?t care if) (?:that )?(?:i )?(?:just )?"
        r"(?:never|don'?t|didn'?t|do not|did not|not|wouldn'?t) wake up\b",
        r"\b(?:go to sleep|fall asleep|sleep) and (?:never|not) wake up\b",
        r"\bwish (?:i|i'd) (?:was|were|had) (?:dead|never been born|not been born|never existed|gone)\b",
        r"\bwish i'd never been born\b",
        r"\b(?:rather|prefer to|better) be dead\b",
        r"\bbetter off dead\b",
        r"\bbeing dead (?:sounds|seems|would be|feels)\b",
        r"\bbetter off (?:without me|if i (?:never existed|was gone|were gone|wasn'?t here|weren'?t here"
        r"|died|was dead|were dead|disappeared))\b",
        r"\b(?:everyone|everybody|the world|my family|they|you)(?:'d| would| will)? (?:have )?been better off"
        r" (?:without me|if i (?:never existed|had never been born|wasn'?t born))\b",
        r"\b(?:no|don'?t see (?:the|any)|can'?t see (?:the|any)|what'?s the) (?:reason|point) (?:to|in|of)"
        r" (?:live|living|life|go on|going on|being alive|being here|existing|staying alive|keep living)\b",
        r"\bnothing (?:left )?to live for\b",
        r"\b(?:not|isn'?t|no longer) worth living\b",
        r"\b(?:tired|sick|exhausted) of (?:being alive|living|life|existing|being here)\b",
        r"\b(?:i|me|myself) (?:could |would |just |to )*(?:disappear|vanish) (?:forever|for good|permanently)\b",
        r"\b(?:stop|cease to) exist(?:ing)?\b|\bwish i (?:didn'?t|did not) exist\b",
        r"\bwant (?:it all|everything|my life|the pain) to (?:stop|end) (?:for good|forever|permanently)\b",
        r"\b(?:want|wanna|wish i could|ready|deserve) (?:to )?die\b",
        r"\b(?:don'?t|do not|no longer) (?:want|wanna) (?:to )?(?:be alive|be here any ?more|exist|wake up)\b",
        # "live" but not "live with my parents", "live alone", "live here", ...
        r"\b(?:don'?t|do not|no longer) (?:want|wanna) (?:to )?live\b"
        r"(?! (?:with|in|at|near|on|alone|there|here|together|somewhere|next|close|abroad|by|under|off|like)\b)",
        r"\bcan'?t go on (?:living|any ?more|like this)\b",
        r"\b(?:hope|hopes|hoping|wish|wishes|wishing|pray|praying)\b.{0,50}\b(?:hit by (?:a|the)|run over|(?:plane|flight)"
        r" (?:goes|would go|will go|crashes|would crash) down|heart (?:would|will|to) (?:just )?stop"
        r"|(?:get|got) (?:really )?sick and die|die in my sleep|(?:can|could|would) all be over)\b",
        r"\b(?:disappointed|sad|upset|angry|annoyed|sorry) (?:that )?i (?:woke|wake) up\b",
        r"\b(?:if|when) i (?:\w+ ){0,4}died\b.{0,30}\b(?:relieved|relief|glad|happy)\b",
        r"\bdeath (?:would be|sounds like|feels like) (?:a )?(?:relief|peace|peaceful|freedom|an escape)\b",
    ),
    # C-SSRS 2: active thoughts of killing oneself.
    "ideation": (
        r"\bsuicid(?:e|al)\b",
        r"\bkms\b",
        rf"\b{SELF_KILL}\b",
        r"\bend(?:ing)? it all\b",
        r"\b(?:thinking|thought|thoughts|think|fantasi[sz]\w*|dream\w*) (?:about|of) (?:dying|death|my death"
        r"|not being here|ending (?:it|things|my life))\b",
    ),
    # C-SSRS 3: a method or the means, thought of or at hand.
    "method": (
        rf"\b(?:saving|saved|stockpil\w+|hoard\w*|collect\w*|stash\w*|hid|hiding|hidden|keeping)"
        rf" (?:up )?(?:\w+ ){{0,3}}{DRUGS}\b",
        rf"\b{DRUGS} (?:\w+ ){{0,3}}(?:saved|hidden|stashed|counted|ready|lined up)\b",
        r"\bin case i (?:decide to |need to |want to )?(?:end it|do it|go through with it|die|kill myself)\b",
        r"\bhow (?:many|much) (?:\w+ ){0,6}(?:it )?(?:would|will|does it|do i need to|to) take to (?:die|kill"
        r"|end it|od|overdose|not wake up)\b|\bhow (?:many|much) (?:\w+ ){0,6}(?:would|will) kill me\b",
        r"\b(?:how|ways?|easiest way|best way|quickest way|painless way) to (?:kill myself|end my life|die"
        r"|hang myself|overdose|od|bleed out)\b",
        r"\bbleed(?:ing)? out\b",
        r"\b(?:cut|cutting|slit|slitting|open) (?:my|your) wrists?\b",
        r"\b(?:rope|noose|cord|belt)\b.{0,80}\b(?:hold (?:me|my weight)|around my neck|hang my ?self)\b",
        r"\b(?:beam|tree|branch|hook|rafter|pipe)\b.{0,40}\b(?:would|will|could|can) hold (?:me|my weight)\b",
        r"\b(?:use|using|turn|turning|point|pointing|put|putting) (?:it|the gun|a gun|the rifle|his gun"
        r"|his rifle|the knife|a knife|that) (?:on|at|against|to) my ?(?:self|head|chest|throat)\b",
        r"\b(?:gun|pistol|rifle|firearm|shotgun|knife|blade|razor) (?:to|against|in) my (?:wrist|throat|head"
        r"|mouth|chest|temple)\b",
        r"\bi(?: have|'ve got| got| bought| just bought) (?:a|my|the) (?:gun|pistol|rifle|firearm|shotgun)\b",
        r"\bbought (?:a |some )?(?:gun|knife|rope|noose|razor blades|charcoal)\b(?! (?:set|safe|license"
        r"|licence|block|sharpener))",
        r"\b(?:pills|rope|noose|gun|knife|razor|blade)s? (?:is |are )?(?:ready|in my hand|right here|next to"
        r" me)\b",
        r"\bjump(?:ing)? (?:off|from|in front of) (?:a |the |my |that )?(?:\w+ ){0,2}" + LETHAL_PLACE + r"\b",
        r"\b(?:step|stepping|walk|walking|lie|lying|throw myself|throwing myself) in front of (?:a |the )?"
        r"(?:train|bus|truck|car|traffic)\b",
        r"\bgarage\b.{0,60}\bengine (?:running|on)\b|\bengine (?:running|on)\b.{0,60}\bgarage\b",
        r"\b(?:car|engine)\b.{0,40}\b(?:closed|shut|locked) garage\b",
        r"\b(?:high|tall|far|deep) enough to (?:kill|die)\b|\b(?:fall|drop|jump|dose) (?:would|will|could) kill"
        r" (?:me|you)\b",
        r"\b(?:googl\w*|search\w*|looking up|looked up|researching|reading up on) (?:\w+ ){0,6}(?:tallest"
        r" (?:bridge|building)|lethal dose|painless|how to die|hanging|noose)\b",
        r"\bcharcoal\b.{0,40}\b(?:tape|my room|the car|bathroom|seal)\b",
    ),
    # C-SSRS 4: intent to act.
    "intent": (
        rf"\b(?:i'm|i am|i'll|i will|going to|gonna|about to|decided to|ready to|made up my mind to)"
        rf" (?:just )?{SELF_KILL}\b",
        r"\bi(?:'ve| have)? (?:decided|made up my mind) to (?:end it|end things|die|do it)\b"
        r"(?! (?:with|between|off)\b)",
        r"\b(?:last|final) (?:night|day|time|week) (?:i'm|i am|i'll be|that i'm) (?:alive|on this earth|breathing)\b",
        r"\bi(?:'ll| will| am going to|'m going to|'m gonna) end (?:it|things) (?:tonight|today|tomorrow|this"
        r"|there|soon|when|after|before|on)\b",
        r"\bwon'?t be (?:alive|around|breathing) (?:by|after|tomorrow|next|much longer|for long)\b",
        r"\b(?:go|going|went|finally going) through with (?:it|ending it|this|the plan)\b",
        r"\b(?:i'm|i am) (?:going to|gonna|about to) end it\b(?! (?:with|between|off|all)\b)",
        r"\bthis is my last (?:message|post|goodbye|text)\b",
        r"\bsomeone to know before i (?:go|die|do it|end it)\b(?! to| out| home| back)",
    ),
    # C-SSRS 5: a worked-out plan (when, where, how) or preparations for death.
    "plan": (
        r"\b(?:goodbye|suicide|farewell) (?:letters?|notes?|messages?|videos?|emails?)\b",
        r"\bthe notes? (?:is|are) (?:written|done|ready)\b",
        r"\bwr(?:ote|itten|iting) (?:a|my) (?:note|letter) (?:to|for) (?:\w+ ){0,3}(?:before|for when|for after)"
        r" i\b",
        r"\b(?:day|night|date) i (?:end it|do it|kill myself|go through with it)\b",
        r"\b(?:after|before|once) i (?:kill myself|end it|end my life)\b",
        r"\bgiv(?:e|ing|en) away (?:all )?(?:of )?(?:my|all my) (?:stuff|things|belongings|possessions)\b",
        rf"\b(?:i'm|i am) (?:doing|gonna do|going to do) it (?:on )?{WEEKDAY}\b",
        r"\bdo it in the (?:garage|woods)\b",
        r"\b(?:after|when|once) i'm gone\b",
        r"\bgiv(?:e|ing|en) (?:all )?my (?:stuff|things|belongings|possessions) away\b",
        r"\bplanned (?:it|everything) (?:all )?out\b.{0,60}\b(?:pills|rope|gun|jump|bridge|die|end it)\b",
        r"\b(?:how|when|where)(?: and (?:how|when|where))? i'm (?:going to|gonna) (?:die|end it|kill myself)\b",
        r"\b(?:wrote down|written down|left|leaving) (?:all )?my passwords\b|\bi'm gone for good\b",
        r"\bpicked (?:the|a|out the|out a) (?:spot|place|bridge|date|day)\b.{0,80}\b(?:jump|end it|do it|die)\b",
        rf"\b(?:going|gonna|plan(?:ning)?|intend) to jump\b.{{0,60}}\b{LETHAL_PLACE}\b",
    ),
    # C-SSRS 6: suicidal behaviour: an attempt (actual, interrupted, aborted) or a preparatory act.
    "behaviour": (
        rf"\b(?:took|taken|swallowed|downed|ate) (?:a bunch of|a whole bunch of|all (?:of )?(?:my|the)|too many"
        rf"|a lot of|a handful of|handfuls of|a (?:whole )?bottle(?: of)?|the whole bottle(?: of)?|[1-9]\d+)"
        rf" (?:of )?(?:my )?(?:[\w']+ ){{0,3}}{DRUGS}\b",
        rf"\b(?:took|taken|swallowed) (?:\w+ ){{0,5}}{DRUGS} (?:\w+ ){{0,3}}to (?:end (?:it|things|my life)|die"
        rf"|kill myself|not wake up)\b",
        r"\b(?:tried|try|trying|attempted) (?:to )?(?:kill|hang|drown|shoot|poison|suffocate|strangle) my ?self\b",
        r"\b(?:tried|trying|attempted) (?:to )?(?:end (?:my (?:own )?life|it all)|overdose|od)\b",
        r"\b(?:meant|trying|tried|wanted) to kill me\b",
        r"\b(?:overdos(?:e|ed|es|ing)|od'?d|od'?ing)\b",
        r"\b(?:i'm|i am|sitting|standing|sat|stood|up) (?:\w+ ){0,3}(?:on|at) (?:the )?(?:edge|ledge|roof"
        r"|rooftop|bridge|railing)"
        r"\b.{0,60}\b(?:looking down|nerve|jump|ready)\b",
        r"\b(?:i'm|i am|can'?t stop) bleeding\b",
        r"\bslit(?:ting)? my wrists?\b",
        r"\bthe cord snapped\b|\brope (?:broke|snapped)\b",
    ),
    # Non-suicidal self-injury about oneself, now or recently.
    "self_harm": (
        r"\b(?:cut|cutting|burn|burning|burned|burnt|hurt|hurting|harm|harming|starve|starving) my ?self\b",
        r"\bself[- ]?(?:harm|harming|injury|injuring|mutilation)\b",
        r"\b(?:cut|cutting|carve|carved|carving|slash\w*) (?:\w+ ){0,3}into my (?:arm|wrist|skin|leg|thigh"
        r"|stomach|hip|ankle)s?\b",
        r"\b(?:cut|cutting|carve|carved|slash\w*) my (?:arm|wrist|skin|leg|thigh|stomach|hip)s?\b",
        r"\b(?:razor|blade)s? (?:to|on|into) my (?:arm|wrist|skin|leg|thigh)s?\b",
        r"\bmy (?:cuts|self[- ]harm scars)\b",
        r"\bthe cuts (?:i made|are|aren'?t|were)\b",
        r"\b(?:hit|hitting|bang|banging|punch|punching) (?:my head|my fists?) (?:against|into|on) (?:the|a)"
        r" (?:wall|door|floor|desk)\b",
        r"\b(?:hit|bang|punch|scratch|pinch|bit|bite|cut|burn)\w* .{0,40}(?:until|till|so hard) (?:it|i|they)"
        r" (?:really )?(?:hurts?|hurt|bled|bleeds?|bleed|bruised?|bruises)\b",
        r"\b(?:hot \w+|lighters?|cigarettes?|matches|blades?|razors?|needles?|pins?) (?:against|on|into|to) my"
        r" (?:skin|arm|wrist|leg|thigh|hand|stomach)s?\b",
        r"\b(?:bit|bite|biting|scratch\w*|punch\w*|burn\w*|cut\w*) my own (?:arm|wrist|skin|leg|thigh|hand|face)s?\b",
        r"\b(?:punch|hit|slap|bite|scratch)(?:ing|ed)? my ?self (?:in the|until|so hard|when|whenever|every)\b",
        r"\bi (?:just |still |only )?cut (?:because|when|whenever|again|every|so that)\b",
        r"\bhurt(?:ing)? my ?self on purpose\b",
    ),
    # Abuse of the writer, or of a child the writer knows of.
    "abuse": (
        rf"\b{PERSON} (?:\w+ ){{0,2}}(?:hits|hit|beats|beat|chokes|choked|strangles|strangled|kicks|kicked"
        r"|slaps|slapped|punches|punched|rapes|raped|molests|molested|abuses|abused|whips|whipped|burns|burned)"
        r" (?:me|her|him|us)\b",
        r"\b(?:beats?|beat|hits?|whips?|whipped|burns?|burned) (?:me|her|him|them|us) with\b",
        rf"\b{PERSON}\b.{{0,50}}\btouch(?:es|ed|ing)? me\b(?! (?:deeply|so much|a lot|to the core))",
        r"\btouch(?:es|ed|ing)? (?:me|her|him) (?:inappropriately|down there|at night)\b",
        r"\bmade me touch\b|\bmakes me touch\b",
        r"\b(?:his|her) lap\b.{0,60}\bsecret\b|\bour little secret\b",
        r"\b(?:forced|forces|forcing|pressured|pressures|made|makes) me (?:to )?(?:have sex|do (?:sexual|things)"
        r"|perform|watch porn|undress|send (?:nudes|pictures))\b",
        r"\bcomes? (?:into|in) my (?:room|bed) at night\b",
        r"\b(?:being|been|was|am|getting|got) (?:physically |sexually |emotionally )?"
        r"(?:abused|molested|raped|assaulted|beaten up|groomed)\b",
        r"\b(?:sexual|physical|child|domestic) (?:abuse|assault|violence)\b",
        r"\b(?:lock|locks|locked|locking) (?:me|us|her|him) (?:in|inside) (?:the|my|a|his|her) (?:\w+ )?"
        r"(?:basement|room|closet|cupboard|garage|shed|attic|bathroom|cellar)\b",
        r"\b(?:starves|starving) (?:me|us)\b",
        r"\b(?:won'?t|doesn'?t|does not|will not|never) let me (?:see|talk to|leave|go out|have|call|keep)"
        r" (?:my )?(?:\w+ )?(?:friends|family|own money|money|the house|phone)\b",
        r"\b(?:not|don'?t feel|do not feel|never feel) safe (?:at home|around (?:him|her|them|my \w+)"
        r"|with (?:him|her|them|my \w+))\b",
        r"\b(?:has|have|had|covered in|with) (?:\w+ )?bruises\b.{0,80}\b(?:dad|mom|father|mother|parent"
        r"|stepdad|stepmom|he|she) (?:\w+ ){0,2}(?:hits|beats|burns|hurts|kicks)\b",
    ),
    # Someone threatens or endangers the writer (or the writer's household).
    "threat": (
        rf"\b(?:afraid|scared|terrified|fear|worried) (?:that )?{PERSON}(?:'ll| will| is going to| is gonna"
        rf"|'s going to|'s gonna| might| would| could| wants to) {HARM_VERB} (?:me|us)\b",
        rf"\b{PERSON} (?:threatens|threatened|keeps threatening|has threatened|is threatening) to"
        rf" (?:{HARM_VERB}|set|shoot|break|throw acid|take (?:the|my|our) (?:kids|children|baby))\b",
        rf"\b(?:yelled|yelling|screamed|screaming|shouted|shouting|threatening|swore|swears|raging)(?: that)?"
        rf" (?:he|she|they)(?:'ll|'d| will| would|'s going to| is going to| was going to|'s gonna| is gonna"
        rf"| was gonna| are going to| were going to) (?:{HARM_VERB}|break|set) (?:me|us|all of us|my|everyone)\b",
        r"\b(?:said|says|saying|told me|texted|texting|keeps saying)(?: that)? (?:he|she|they)(?:'ll|'d| will"
        r"| would|'s going to| is going to| was going to|'s gonna| is gonna| are going to)"
        r" (?:shoot|stab|poison|strangle|burn|break my|break our|set (?:me|us|the house|my))\b",
        r"\b(?:waving|pointing|brandishing) (?:a |his |her |their )?(?:gun|knife|machete|weapon|axe|pistol)\b",
        r"\b(?:showed up|came over|came back|turned up|is outside|was outside|came at me) with (?:a |his |her"
        r" |their )?(?:gun|knife|bat|machete|weapon|crowbar|axe|pistol)\b",
        r"\bif i (?:leave|tell|report|call the police|go to the police|break up)\b.{0,50}\b(?:kill|hurt|find me"
        r"|slit|shoot|stab|beat)\b",
        rf"\b(?:coming|come|on (?:his|her|their) way) (?:here |over )?to {HARM_VERB} me\b",
        r"\b(?:knows?|found out|find out) where i live\b",
        r"\b(?:restraining|protection|protective) order\b",
        r"\b(?:break(?:ing)?|kick(?:ing)?) down (?:my|the) (?:\w+ )?door\b",
        r"\btrying to break in\b",
        r"\bbreak(?:ing)? into my (?:house|home|apartment|flat|room|car)\b",
        r"\b(?:stalking|stalks|stalked) me\b",
        r"\b(?:someone|somebody|a man|a guy|a car|a van|he|she|they|my ex) (?:is |'s |has been |keeps |was )?"
        r"(?:following|chasing) me\b",
        r"\b(?:outside|at) my (?:door|apartment|house|flat|window|work)\b.{0,60}\b(?:banging|yelling"
        r"|screaming|threat|won'?t leave)\b",
        r"\b(?:i'm|i am) (?:in (?:immediate |serious )?danger)\b(?! of\b)",
    ),
    # The writer means to hurt or kill someone else.
    "harm_to_others": (
        rf"\b(?:i'm|i am|i'll|i will|going to|gonna|about to|want to|wanna|plan to|planning to) (?:\w+ ){{0,2}}"
        rf"{HARM_VERB} {PEOPLE}\b",
        rf"\b(?:how|when|where) (?:i'd|i would|i'll|i will|to) {HARM_VERB} {PEOPLE}\b",
        r"\bi'd (?:shoot|stab|kill|poison)\b",
        r"\b(?:bring|take|bringing|taking) (?:a |my |his |the )?(?:[\w']+ )?(?:gun|rifle|knife|weapon|bomb) (?:to"
        r"|into) (?:school|work|class|campus|the office|church)\b",
        r"\b(?:drive|driving|drove|ram|ramming|plow\w*) (?:my |the |a )?(?:car |truck |van )?into (?:a |the )?"
        r"(?:crowd|people|them|him|her)\b",
        r"\bput(?:ting)? something in (?:his|her|their|my \w+'s) (?:drink|food|coffee|tea)\b",
        r"\bburn (?:\w+ ){0,2}(?:house|car|place|apartment|school|office) down\b",
        r"\bshoot up (?:my|the|a) \w+\b",
        r"\b(?:want|wanted|feel like|urge to|going to|gonna) (?:\w+ )?(?:shake|smother|hurt|hit|suffocate|drown)"
        r" (?:my|the) (?:baby|infant|newborn|toddler|child|kid|son|daughter)\b",
    ),
}

# Idioms and denials. A hit that overlaps one of these spans is ignored, so keep each phrase as narrow
# as the idiom itself: anything broader would hide a real crisis sentence.
BENIGN: tuple[str, ...] = (
    r"\b(?:not|never|no longer)(?: been| feeling)? suicidal\b",
    r"\bkill(?:ed|ing)? my ?self laughing\b",
    r"\bdie (?:of|from) (?:embarrassment|shame|boredom|cringe|laughter)\b",
    r"\bdie laughing\b",
    r"\b(?:no|not having|don'?t have|never had|without) (?:any )?(?:thoughts?|plans?|intentions?|urges?) (?:of|to"
    r"|about) (?:\w+ ){0,2}(?:ending|end|suicide|hurting|harming|killing|dying)\b(?: it)?",
    r"\bsuicide (?:rates?|prevention|awareness|statistics|squad)\b",
    r"\b(?:don'?t|do not|never) (?:\w+ )?(?:want|wanna) (?:to )?die\b",
    r"\b(?:don'?t|do not|never|wouldn'?t) (?:\w+ )?(?:want|wanna|mean|meant) to hurt\b",
    r"\bhurt (?:his|her|their|my \w+'?s?) feelings\b",
    r"\b(?:would|'d|will|could) never (?:\w+ )?(?:hurt|harm|kill|cut) my ?self\b",
    r"\bnot (?:going|gonna|about) to (?:hurt|harm|kill|cut) my ?self\b",
    r"\bcut my (?:\w+ )?(?:arm|leg|hand|finger|thigh|foot|knee) on (?:a|the|some) (?:fence|rock|glass|nail|branch"
    r"|wire)\b",
    # Accidents only: "I cut myself when I feel empty" must still be flagged.
    r"\b(?:hurt|cut|burn|burned|burnt) my ?self (?:(?:while |when )?(?:playing|cooking|shaving|running"
    r"|lifting|skiing|training|working out)|at the gym|during (?:practice|training|a game|the game|the match)"
    r"|on (?:a|the|some) (?:broken )?(?:glass|paper|stove|oven|pan|iron|nail|tin can))\b",
    r"\boverdos\w* on (?:coffee|caffeine|sugar|chocolate|candy|junk food|netflix|tv)\b",
    r"\b(?:caffeine|coffee|sugar|chocolate) overdose\b",
    r"\bhits? me up\b",
    r"\bbeats? me (?:at|in|to|by|\d)",
    r"\bkick(?:s|ed)? me out\b",
    r"\bfollowing me (?:back|on (?:instagram|insta|twitter|x|tiktok|facebook|youtube|twitch|social media))\b",
    r"\bgun (?:license|licence|collection|safe|range)\b",
    r"\bkill (?:for|it)\b",
)
# Jokes: a threat against someone else in a message that laughs at itself is banter, not intent.
JOKE = r"\b(?:lol|lmao|haha\w*|jk|just kidding)\b|😂|🤣"

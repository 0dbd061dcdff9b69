"""Built-in training prompts for the pre-verifier: varied chat tasks, written for this project.

GSM8K alone would teach the pre-verifier what acceptance looks like in arithmetic, where the draft
agrees most; real traffic also has stories, emails, code, summaries and translations, where it
agrees far less. These templates cover those kinds of requests. They are deliberately not taken
from Spec-Bench (the evaluation set) and are built deterministically so that a training run can be
repeated exactly.
"""

from __future__ import annotations

import itertools
import random

_TOPICS = [
    "a lighthouse keeper", "a lost robot", "a girl who can talk to birds", "an old fisherman", "a dragon afraid of fire",
    "two rival bakers", "a time-travelling cat", "a small village during a flood", "a boy learning the violin",
    "a detective in a snowy town", "a friendly ghost", "a sailor and a storm", "a forgotten library", "a garden on Mars",
    "a clockmaker's apprentice", "the last day of summer camp",
]
_STORY = [
    "Write a short story about {t}.", "Tell me a bedtime story about {t}.", "Write a poem about {t}.",
    "Write the opening paragraph of a novel about {t}.", "Write a funny dialogue involving {t}.",
]
_EMAIL = [
    "Write an email to my manager asking for {x}.", "Write a polite email to a customer about {x}.",
    "Draft a short message to a friend about {x}.", "Write a formal letter to the city council about {x}.",
]
_EMAIL_SUBJECTS = [
    "a day off next Friday", "a delayed shipment", "moving the meeting to Thursday", "a broken street light",
    "the results of our team survey", "a refund for a damaged product", "planning a birthday party", "a new parking policy",
    "feedback on the quarterly report", "joining the hiking club",
]
_EXPLAIN = [
    "Explain {c} in simple terms.", "Explain {c} to a ten-year-old.", "What is {c} and why does it matter?",
    "Give a short overview of {c}.", "What are the pros and cons of {c}?",
]
_CONCEPTS = [
    "photosynthesis", "inflation", "how vaccines work", "the water cycle", "machine learning", "compound interest",
    "black holes", "the French Revolution", "supply and demand", "plate tectonics", "how a bicycle stays upright",
    "recursion in programming", "the greenhouse effect", "how the stock market works", "democracy", "electric cars",
    "sleep and memory", "renewable energy",
]
_LISTS = [
    "List {n} tips for {x}.", "Give me {n} ideas for {x}.", "What are {n} common mistakes when {x}?",
    "Make a checklist for {x}.",
]
_LIST_SUBJECTS = [
    "learning a new language", "saving money", "a healthy breakfast", "a rainy weekend", "studying for exams",
    "starting a vegetable garden", "writing a resume", "a team-building event", "traveling on a budget",
    "keeping a houseplant alive", "running a first marathon", "organizing a small kitchen",
]
_CODE = [
    "Write a Python function that {x}.", "Write a JavaScript function that {x}.", "Explain, step by step, a Python program that {x}.",
    "Write a short Python script that {x}, with comments.",
]
_CODE_TASKS = [
    "reverses a string", "checks whether a number is prime", "counts the words in a text file", "merges two sorted lists",
    "computes the Fibonacci numbers up to n", "removes duplicates from a list while keeping order",
    "finds the largest number in a list", "converts Celsius to Fahrenheit", "validates an email address",
    "reads a CSV file and prints the average of a column", "flattens a nested list", "checks if a word is a palindrome",
]
_PASSAGES = [
    "The city opened a new public library last month. It has three floors, a children's section with weekly reading "
    "hours, and a maker space with 3D printers. Since the opening, more than ten thousand residents have signed up for "
    "library cards, and the mayor said the building will host free evening classes starting in the autumn.",
    "Researchers studied two groups of students for one semester. The first group took short breaks every thirty "
    "minutes while studying; the second studied without breaks. At the end of the term, the group that took breaks "
    "scored eight percent higher on average and reported feeling less tired, although the difference was smaller in math.",
    "A small bakery in the old town has started delivering bread by bicycle. The owner says the idea began during a "
    "street closure, when vans could not reach the shop. Customers liked the service so much that she hired two riders, "
    "and the bakery now delivers to about two hundred homes every morning before eight o'clock.",
    "The river festival returned this year after a two-year break. Boats decorated with lanterns sailed past the bridge "
    "at sunset, local bands played on floating stages, and food stalls lined both banks. Organizers estimated that forty "
    "thousand people attended, and they plan to add a second weekend next year.",
    "The company reported higher sales in the third quarter, driven by strong demand for its home appliances. However, "
    "profits fell slightly because of rising transport costs. The chief executive said the company would open two new "
    "warehouses to shorten delivery routes and expects costs to stabilize next year.",
    "Volunteers planted more than three thousand trees along the highway this spring. The project, funded by local "
    "businesses, aims to reduce noise for nearby homes and provide shade for cyclists. Experts say the trees will need "
    "regular watering during their first two summers to survive.",
]
_SUMMARY = [
    "Summarize the following text in two sentences:\n\n{p}", "Give a one-sentence summary of this paragraph:\n\n{p}",
    "What are the key points of this text?\n\n{p}", "Answer briefly: what is this text about?\n\n{p}",
]
_SENTENCES = [
    "The train leaves at seven in the morning.", "My sister loves to paint landscapes.",
    "Could you tell me where the nearest pharmacy is?", "We are planning a trip to the mountains next week.",
    "The soup is too salty for my taste.", "Please close the window when you leave.",
    "The museum is closed on Mondays.", "I have been learning to cook for two years.",
]
_LANGUAGES = ["French", "Spanish", "German", "Italian"]
_TRANSLATE = ["Translate into {l}: {s}", "How do you say this in {l}? \"{s}\""]
_QA = [
    "Why is the sky blue?", "How do airplanes fly?", "What causes the seasons on Earth?", "Why do cats purr?",
    "How does a refrigerator keep food cold?", "What is the difference between weather and climate?",
    "Why do we have leap years?", "How do bees make honey?", "What is the tallest mountain in the world?",
    "How can I improve my handwriting?", "What should I pack for a week-long camping trip?",
    "How do I make a good cup of tea?", "Why does bread rise?", "How does the moon affect the tides?",
]
_ROLEPLAY = [
    "Pretend you are {r}. Introduce yourself and describe your day.", "You are {r}. Give me advice about {x}.",
]
_ROLES = ["a pirate captain", "a medieval knight", "a tour guide in Rome", "a friendly librarian", "a space station cook"]
_ADVICE = ["making new friends", "staying focused", "planning a trip", "learning to swim", "cooking for guests"]
_MATH_NAMES = ["Maya", "Leo", "Priya", "Tom", "Sofia", "Omar", "Hana", "Jack"]
_MATH_ITEMS = ["apples", "stickers", "marbles", "books", "cookies", "pencils"]


def _math(rng: random.Random) -> str:
    name, other = rng.sample(_MATH_NAMES, 2)
    item = rng.choice(_MATH_ITEMS)
    a, b, c = rng.randint(5, 60), rng.randint(2, 9), rng.randint(1, 20)
    shapes = [
        f"{name} has {a} {item}. {other} has {b} times as many. How many {item} do they have together?",
        f"{name} buys {b} boxes of {item} with {a} in each box and gives away {c}. How many are left?",
        f"A shop sells {item} for ${b} each. {name} spends ${a * b}. How many {item} did {name} buy?",
        f"{name} reads {b} pages a day for {c} days, then {a} pages on the last day. How many pages in total?",
    ]
    return rng.choice(shapes)


def builtin_prompts(count: int | None = None, *, seed: int = 0) -> list[str]:
    """`count` distinct prompts (all of them when None), shuffled deterministically by `seed`."""
    rng = random.Random(1234)
    prompts: list[str] = []
    prompts += [s.format(t=t) for s, t in itertools.product(_STORY, _TOPICS)]
    prompts += [s.format(x=x) for s, x in itertools.product(_EMAIL, _EMAIL_SUBJECTS)]
    prompts += [s.format(c=c) for s, c in itertools.product(_EXPLAIN, _CONCEPTS)]
    prompts += [s.format(n=rng.choice([3, 5, 7]), x=x) for s, x in itertools.product(_LISTS, _LIST_SUBJECTS)]
    prompts += [s.format(x=x) for s, x in itertools.product(_CODE, _CODE_TASKS)]
    prompts += [s.format(p=p) for s, p in itertools.product(_SUMMARY, _PASSAGES)]
    prompts += [s.format(l=lang, s=sent) for s, lang, sent in itertools.product(_TRANSLATE, _LANGUAGES, _SENTENCES)]
    prompts += list(_QA)
    prompts += [_ROLEPLAY[0].format(r=r) for r in _ROLES]
    prompts += [_ROLEPLAY[1].format(r=r, x=x) for r, x in itertools.product(_ROLES, _ADVICE)]
    prompts += [_math(rng) for _ in range(40)]
    prompts = list(dict.fromkeys(prompts))
    random.Random(seed).shuffle(prompts)
    return prompts if count is None else prompts[:count]

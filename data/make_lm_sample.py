"""Writes data/lm/train.txt and data/lm/dev.txt, the embedded sample of ``lstmtext train lm``.

Short encyclopedia-style articles about invented towns, rivers and people, composed from the hand-written
phrase lists below (no benchmark text is copied) with a fixed seed, so ``python data/make_lm_sample.py``
reproduces the files byte for byte. Layout as in WikiText: one paragraph per line, a heading line
``= Name =`` per article and blank lines between paragraphs.
"""

from __future__ import annotations

import random
from pathlib import Path

HERE = Path(__file__).resolve().parent / "lm"

SYLLABLES = [
    "bar",
    "ton",
    "mel",
    "ri",
    "an",
    "do",
    "ver",
    "sa",
    "lin",
    "cor",
    "ka",
    "west",
    "ham",
    "ford",
    "ly",
    "ne",
    "mor",
    "ga",
    "thal",
    "bro",
    "en",
    "stein",
    "ol",
    "vik",
    "ra",
    "dell",
    "pen",
    "qui",
]
FIRST = [
    "Anna",
    "Peter",
    "Maria",
    "John",
    "Clara",
    "Thomas",
    "Helen",
    "David",
    "Laura",
    "George",
    "Sofia",
    "Henry",
    "Alice",
    "Robert",
    "Emma",
    "William",
    "Grace",
    "James",
    "Ruth",
    "Daniel",
    "Ella",
    "Samuel",
]
JOBS = [
    "painter",
    "engineer",
    "poet",
    "architect",
    "composer",
    "historian",
    "botanist",
    "sailor",
    "teacher",
    "physician",
    "mapmaker",
    "singer",
    "astronomer",
    "carpenter",
    "novelist",
    "mathematician",
]
REGIONS = [
    "the northern hills",
    "the eastern plain",
    "the southern coast",
    "the western valleys",
    "the central lowlands",
    "the high plateau",
    "the river delta",
    "the old forest",
]
PRODUCTS = ["wool", "timber", "salt", "apples", "wine", "cheese", "glass", "paper", "copper", "fish", "grain", "honey"]
BUILDINGS = [
    "a stone bridge",
    "a small harbour",
    "a market hall",
    "a library",
    "a clock tower",
    "a mill",
    "a railway station",
    "a school",
    "a town hall",
    "a lighthouse",
    "a theatre",
    "a museum",
]
ADJ = ["old", "small", "quiet", "busy", "large", "famous", "beautiful", "narrow", "wide", "ancient", "modern", "green"]
EVENTS = [
    "a great flood",
    "a long winter",
    "a fire",
    "a harvest festival",
    "a storm",
    "a visit of the king",
    "the opening of the railway",
    "a dry summer",
    "the building of a new road",
    "an outbreak of fever",
]
MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
WORKS = [
    "a book of poems",
    "a set of maps",
    "a symphony",
    "a series of paintings",
    "a history of the region",
    "a study of local plants",
    "a collection of songs",
    "a design for a bridge",
    "a novel about the sea",
]


def name(rng: random.Random, parts: int = 2) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(parts)).capitalize()


def year(rng: random.Random) -> int:
    return rng.randint(1500, 1990)


def town_article(rng: random.Random) -> list[str]:
    town, river = name(rng), name(rng)
    y = year(rng)
    p1 = [
        f"{town} is a {rng.choice(ADJ)} town in {rng.choice(REGIONS)} .",
        f"It lies on the river {river} , about {rng.randint(3, 90)} miles from the sea .",
        f"In {y + 210} the town had a population of {rng.randint(2, 90)} thousand people .",
        f"The town is known for its {rng.choice(PRODUCTS)} and its {rng.choice(PRODUCTS)} .",
    ]
    p2 = [
        f"The first record of {town} dates from {y} , when it was a {rng.choice(['village', 'farm', 'fort', 'market'])} on the {river} .",
        f"In {y + rng.randint(5, 60)} the people of {town} built {rng.choice(BUILDINGS)} .",
        f"In {rng.choice(MONTHS)} {y + rng.randint(61, 150)} the town suffered {rng.choice(EVENTS)} .",
        f"After this , {rng.choice(BUILDINGS)} and {rng.choice(BUILDINGS)} were built near the river .",
    ]
    p3 = [
        f"Today {town} has {rng.choice(BUILDINGS)} , {rng.choice(BUILDINGS)} and {rng.choice(BUILDINGS)} .",
        f"Many visitors come in {rng.choice(MONTHS)} for {rng.choice(EVENTS[3:4] + ['the spring fair', 'the boat race'])} .",
        f"The town is twinned with {name(rng)} .",
    ]
    paras = [
        " ".join(rng.sample(p1, rng.randint(2, 4))),
        " ".join(p2[: rng.randint(2, 4)]),
        " ".join(rng.sample(p3, rng.randint(1, 3))),
    ]
    return [f"= {town} ="] + paras[: rng.randint(2, 3)]


def person_article(rng: random.Random) -> list[str]:
    first, last = rng.choice(FIRST), name(rng)
    born = year(rng)
    died = born + rng.randint(30, 90)
    town = name(rng)
    job = rng.choice(JOBS)
    he = rng.choice(["He", "She"])
    his = "His" if he == "He" else "Her"
    p1 = [
        f"{first} {last} ( {born} – {died} ) was a {rng.choice(ADJ)} {job} from {town} .",
        f"{he} is best known for {rng.choice(WORKS)} , written in {born + rng.randint(20, 29)} .",
        f"{his} father was a {rng.choice(JOBS)} and {his.lower()} mother a {rng.choice(JOBS)} .",
    ]
    p2 = [
        f"{he} studied in {name(rng)} and worked for many years in {rng.choice(REGIONS)} .",
        f"In {born + rng.randint(30, 40)} {he.lower()} moved to {name(rng)} , where {he.lower()} wrote {rng.choice(WORKS)} .",
        f"{his} work was praised for its {rng.choice(['clarity', 'colour', 'care', 'humour', 'detail', 'warmth'])} .",
        f"{he} died in {town} in {died} .",
    ]
    p3 = [
        f"A {rng.choice(['street', 'school', 'square', 'ship', 'prize'])} in {town} is named after {first} {last} .",
        f"{his} {rng.choice(['letters', 'notebooks', 'drawings', 'papers'])} are kept in {rng.choice(BUILDINGS)} in {name(rng)} .",
    ]
    paras = [
        " ".join(p1[: rng.randint(2, 3)]),
        " ".join(p2[: rng.randint(2, 4)]),
        " ".join(rng.sample(p3, rng.randint(1, 2))),
    ]
    return [f"= {first} {last} ="] + paras[: rng.randint(2, 3)]


def river_article(rng: random.Random) -> list[str]:
    river = name(rng)
    towns = [name(rng) for _ in range(3)]
    p1 = [
        f"The {river} is a river in {rng.choice(REGIONS)} .",
        f"It is {rng.randint(20, 400)} miles long and flows from the hills near {towns[0]} to the sea at {towns[1]} .",
        f"The river passes {towns[2]} , where it is crossed by {rng.choice(BUILDINGS[:1] + ['an iron bridge', 'a ferry'])} .",
    ]
    p2 = [
        f"Boats carried {rng.choice(PRODUCTS)} and {rng.choice(PRODUCTS)} on the {river} until {year(rng)} .",
        f"In {rng.choice(MONTHS)} the water is {rng.choice(['high', 'low', 'cold', 'clear', 'fast'])} and the fishing is good .",
    ]
    return [f"= {river} ="] + [" ".join(p1), " ".join(p2[: rng.randint(1, 2)])]


def article(rng: random.Random) -> list[str]:
    lines = rng.choice([town_article, person_article, river_article])(rng)
    out = []
    for line in lines:
        out += [line, ""]  # a blank line after each heading and paragraph, as in WikiText
    return out


def write(path: Path, rng: random.Random, size: int) -> None:
    lines: list[str] = []
    total = 0
    while total < size:
        for line in article(rng):
            lines.append(line)
            total += len(line) + 1
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> None:
    HERE.mkdir(parents=True, exist_ok=True)
    write(HERE / "train.txt", random.Random(5), 100_000)
    write(HERE / "dev.txt", random.Random(6), 12_000)
    print(f"wrote {HERE / 'train.txt'} and {HERE / 'dev.txt'}")


if __name__ == "__main__":
    main()

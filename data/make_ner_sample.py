"""Writes data/ner/train.conll and data/ner/dev.conll, the embedded default of ``lstmtext train ner``.

Sentences are composed here from hand-written templates and name lists (no benchmark text is copied),
seeded, so the files are reproducible: ``python data/make_ner_sample.py``. Tags are BIO, two columns
(token, tag); each file opens with a ``-DOCSTART-`` line as CoNLL files do. Dev uses the same templates
but partly unseen names, so its score says something about generalisation.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "ner"

FIRST = [
    "Angela",
    "Emmanuel",
    "Maria",
    "John",
    "Olaf",
    "Giorgia",
    "Pedro",
    "Yuki",
    "Amara",
    "Lars",
    "Sofia",
    "Ahmed",
    "Chen",
    "Fatima",
    "Luca",
    "Ingrid",
    "Kwame",
    "Priya",
    "Tomas",
    "Elena",
    "Hans",
    "Aiko",
    "Carlos",
    "Nadia",
    "Pierre",
    "Ravi",
    "Greta",
    "Omar",
    "Lucia",
    "Viktor",
    "Anna",
    "Mehmet",
]
LAST = [
    "Merkel",
    "Macron",
    "Schmidt",
    "Rossi",
    "Tanaka",
    "Okafor",
    "Nielsen",
    "Garcia",
    "Kowalski",
    "Dubois",
    "Haddad",
    "Wang",
    "Moreau",
    "Silva",
    "Jansen",
    "Mensah",
    "Sharma",
    "Novak",
    "Petrova",
    "Becker",
    "Sato",
    "Lopez",
    "Ivanova",
    "Costa",
    "Larsen",
    "Yilmaz",
    "Fischer",
    "Bauer",
    "Romano",
    "Keller",
]
LOC = [
    "Paris",
    "Berlin",
    "London",
    "Tokyo",
    "Madrid",
    "Rome",
    "Nairobi",
    "Lima",
    "Oslo",
    "Cairo",
    "Brussels",
    "Vienna",
    "Lagos",
    "Mumbai",
    "Sydney",
    "Toronto",
    "Lisbon",
    "Warsaw",
    "Prague",
    "Seoul",
    "Athens",
    "New York",
    "Buenos Aires",
    "Cape Town",
    "Hong Kong",
    "Rio de Janeiro",
    "France",
    "Germany",
    "Japan",
    "Brazil",
    "Kenya",
    "Canada",
    "Italy",
    "Spain",
    "Norway",
    "India",
    "Egypt",
    "Poland",
    "Europe",
    "South Africa",
    "United States",
    "New Zealand",
]
ORG = [
    "Siemens",
    "Reuters",
    "Toyota",
    "the United Nations",
    "NATO",
    "the European Union",
    "Google",
    "Nestle",
    "Volkswagen",
    "the World Bank",
    "Interpol",
    "Unilever",
    "Airbus",
    "the Red Cross",
    "Bayer",
    "Fiat",
    "Barclays",
    "Samsung",
    "the IMF",
    "Real Madrid",
    "Ajax Amsterdam",
    "Deutsche Bank",
    "General Motors",
    "the Bundesbank",
    "Microsoft",
    "Oxford University",
    "the BBC",
    "Greenpeace",
    "Philips",
    "Renault",
]
MISC = [
    "German",
    "French",
    "British",
    "Japanese",
    "Italian",
    "Brazilian",
    "Kenyan",
    "European",
    "Olympic",
    "Christian",
    "Muslim",
    "Norwegian",
    "Spanish",
    "Polish",
    "Canadian",
    "Dutch",
    "Indian",
    "Egyptian",
    "World Cup",
    "Nobel Prize",
    "Tour de France",
    "Euro",
    "Grand Prix",
]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
NUMS = ["two", "three", "12", "40", "1,500", "3.5", "about 200", "nearly 90"]

# {PER} {LOC} {ORG} {MISC} are entities; {DAY} and {NUM} are plain words.
TEMPLATES = [
    "{PER} met {PER} in {LOC} on {DAY} .",
    "{PER} , the chief executive of {ORG} , said on {DAY} that profits rose .",
    "{ORG} said it would cut {NUM} jobs in {LOC} .",
    "The {MISC} government announced new talks with {ORG} .",
    "{PER} scored twice as {ORG} beat {ORG} 3-1 in {LOC} .",
    "Police in {LOC} arrested {NUM} people on {DAY} , {ORG} reported .",
    "{PER} told reporters in {LOC} that the {MISC} economy was growing .",
    "Shares in {ORG} fell {NUM} percent after {PER} resigned .",
    "{PER} won the {MISC} title in {LOC} .",
    "The talks between {LOC} and {LOC} will resume on {DAY} .",
    "{ORG} and {ORG} agreed a merger worth {NUM} million dollars .",
    "{MISC} officials said {PER} would visit {LOC} next week .",
    "Speaking in {LOC} , {PER} criticised {ORG} .",
    "{PER} ( {ORG} ) finished second behind {PER} .",
    "A spokesman for {ORG} in {LOC} declined to comment .",
    "{LOC} beat {LOC} 2-0 in a friendly on {DAY} .",
    "Prime Minister {PER} flew to {LOC} for talks with {PER} .",
    "The {MISC} minister {PER} said {ORG} had broken the rules .",
    "Heavy rain hit {LOC} on {DAY} , killing {NUM} people .",
    "{PER} joined {ORG} from {ORG} last year .",
    "Results of the {MISC} Open in {LOC} :",
    "{ORG} opened a new office in {LOC} .",
    "It was the first {MISC} win in {LOC} since 1998 .",
    "{PER} , who lives in {LOC} , works for {ORG} .",
    "Nothing much happened on {DAY} .",
    "Markets were quiet as traders waited for the {MISC} figures .",
]


def person(rng: random.Random, first: list[str], last: list[str]) -> str:
    r = rng.random()
    if r < 0.2:
        return rng.choice(last)
    return f"{rng.choice(first)} {rng.choice(last)}"


def words_of(text: str) -> list[str]:
    return text.split()


def sentence(rng: random.Random, pools: dict) -> list[tuple[str, str]]:
    template = rng.choice(TEMPLATES)
    rows: list[tuple[str, str]] = []
    for part in re.split(r"(\{[A-Z]+\})", template):
        if not part.strip():
            continue
        if part in ("{PER}", "{LOC}", "{ORG}", "{MISC}"):
            kind = part[1:-1]
            name = person(rng, pools["first"], pools["last"]) if kind == "PER" else rng.choice(pools[kind])
            words = words_of(name)
            if words[0] == "the":  # "the United Nations": the article is not part of the name
                rows.append(("the" if rows else "The", "O"))
                words = words[1:]
            rows += [(w, ("B-" if i == 0 else "I-") + kind) for i, w in enumerate(words)]
        elif part == "{DAY}":
            rows.append((rng.choice(DAYS), "O"))
        elif part == "{NUM}":
            rows += [(w, "O") for w in words_of(rng.choice(NUMS))]
        else:
            rows += [(w, "O") for w in words_of(part)]
    return rows


def write(path: Path, sentences: list[list[tuple[str, str]]]) -> None:
    lines = ["-DOCSTART- O", ""]
    for rows in sentences:
        lines += [f"{w} {t}" for w, t in rows] + [""]
    path.write_text("\n".join(lines), encoding="utf-8")


def main() -> None:
    rng = random.Random(2003)
    OUT.mkdir(parents=True, exist_ok=True)
    # dev holds out a few names of each kind, so it is not a memory test
    held = {"first": FIRST[-6:], "last": LAST[-6:], "LOC": LOC[-8:], "ORG": ORG[-6:], "MISC": MISC[-4:]}
    train_pools = {"first": FIRST[:-6], "last": LAST[:-6], "LOC": LOC[:-8], "ORG": ORG[:-6], "MISC": MISC[:-4]}
    dev_pools = {k: train_pools[k] + held[k] for k in held}
    write(OUT / "train.conll", [sentence(rng, train_pools) for _ in range(600)])
    write(OUT / "dev.conll", [sentence(rng, dev_pools) for _ in range(150)])


if __name__ == "__main__":
    main()

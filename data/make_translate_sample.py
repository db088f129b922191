"""Writes data/translate/{train,dev}.tsv: a small German→English parallel sample, the embedded default of
``lstmtext train translate``.

Every sentence is composed here from hand-written word lists and templates (no benchmark text is copied),
with German agreement (gender, number, case endings) and verb-second word order done by rule, so the model
has real reordering and inflection to learn. Seeded, so the files are reproducible:
``python data/make_translate_sample.py``.
"""

from __future__ import annotations

import random
from pathlib import Path

HERE = Path(__file__).resolve().parent
SEED = 7
N_TRAIN, N_DEV = 2000, 200

# (German singular, German plural, gender, English singular, English plural)
PEOPLE = [
    ("Mann", "Männer", "m", "man", "men"),
    ("Frau", "Frauen", "f", "woman", "women"),
    ("Junge", "Jungen", "m", "boy", "boys"),
    ("Mädchen", "Mädchen", "n", "girl", "girls"),
    ("Kind", "Kinder", "n", "child", "children"),
    ("Hund", "Hunde", "m", "dog", "dogs"),
    ("Katze", "Katzen", "f", "cat", "cats"),
    ("Arbeiter", "Arbeiter", "m", "worker", "workers"),
    ("Musiker", "Musiker", "m", "musician", "musicians"),
    ("Person", "Personen", "f", "person", "people"),
    ("Radfahrer", "Radfahrer", "m", "cyclist", "cyclists"),
    ("Sängerin", "Sängerinnen", "f", "singer", "singers"),
]
ANIMALS = {"Hund", "Katze"}
PERSON_ADJ = [
    ("jung", "young"),
    ("alt", "old"),
    ("klein", "little"),
    ("groß", "tall"),
    ("glücklich", "happy"),
    ("müde", "tired"),
    ("blond", "blond"),
]
COLOURS = [
    ("rot", "red"),
    ("blau", "blue"),
    ("grün", "green"),
    ("gelb", "yellow"),
    ("schwarz", "black"),
    ("weiß", "white"),
    ("braun", "brown"),
]
CLOTHES = [
    ("Hemd", "n", "shirt"),
    ("Jacke", "f", "jacket"),
    ("Mantel", "m", "coat"),
    ("Hut", "m", "hat"),
    ("Kleid", "n", "dress"),
    ("Mütze", "f", "cap"),
]
# (German 3rd singular, German plural, English -ing form)
INTRANSITIVE = [
    ("läuft", "laufen", "running"),
    ("spielt", "spielen", "playing"),
    ("sitzt", "sitzen", "sitting"),
    ("steht", "stehen", "standing"),
    ("schläft", "schlafen", "sleeping"),
    ("springt", "springen", "jumping"),
    ("wartet", "warten", "waiting"),
    ("tanzt", "tanzen", "dancing"),
    ("fährt Fahrrad", "fahren Fahrrad", "riding a bike"),
    ("lacht", "lachen", "laughing"),
    ("singt", "singen", "singing"),
]
TRANSITIVE = [
    ("hält", "halten", "holding"),
    ("trägt", "tragen", "carrying"),
    ("wirft", "werfen", "throwing"),
    ("fängt", "fangen", "catching"),
    ("sucht", "suchen", "looking for"),
]
OBJECTS = [
    ("Ball", "m", "ball"),
    ("Stock", "m", "stick"),
    ("Korb", "m", "basket"),
    ("Tasche", "f", "bag"),
    ("Flasche", "f", "bottle"),
    ("Kiste", "f", "box"),
    ("Buch", "n", "book"),
    ("Seil", "n", "rope"),
    ("Schild", "n", "sign"),
]
OBJECT_ADJ = COLOURS + [("groß", "big"), ("klein", "small"), ("alt", "old"), ("neu", "new")]
PLACES = [
    ("im Park", "in the park"),
    ("am Strand", "on the beach"),
    ("auf der Straße", "on the street"),
    ("im Wasser", "in the water"),
    ("vor einem Gebäude", "in front of a building"),
    ("im Schnee", "in the snow"),
    ("auf einer Bühne", "on a stage"),
    ("in der Küche", "in the kitchen"),
    ("neben einem Auto", "next to a car"),
    ("auf dem Rasen", "on the grass"),
    ("in der Stadt", "in the city"),
    ("an einem See", "by a lake"),
]
NUMBERS = [("Zwei", "two"), ("Drei", "three"), ("Vier", "four"), ("Einige", "some"), ("Viele", "many")]


def subject(rng: random.Random) -> tuple[str, str, bool]:
    """(German nominative NP, English NP, plural?)"""
    de_sg, de_pl, g, en_sg, en_pl = rng.choice(PEOPLE)
    adj = rng.choice(PERSON_ADJ) if rng.random() < 0.6 else None
    if rng.random() < 0.25:  # plural with a number word: strong adjective ending -e
        num_de, num_en = rng.choice(NUMBERS)
        de = f"{num_de} {adj[0] + ('' if adj[0].endswith('e') else 'e') + ' ' if adj else ''}{de_pl}"
        return de, f"{num_en} {adj[1] + ' ' if adj else ''}{en_pl}", True
    if rng.random() < 0.7:  # indefinite: ein großer Mann / eine große Frau / ein großes Kind
        art = {"m": "Ein", "f": "Eine", "n": "Ein"}[g]
        end = {"m": "er", "f": "e", "n": "es"}[g]
        en_art = "An" if (adj[1] if adj else en_sg)[0] in "aeiou" else "A"
    else:  # definite: der große Mann / die große Frau / das große Kind
        art = {"m": "Der", "f": "Die", "n": "Das"}[g]
        end, en_art = "e", "The"
    a = (adj[0][:-1] if adj and adj[0].endswith("e") else adj[0]) + end + " " if adj else ""
    return f"{art} {a}{de_sg}", f"{en_art} {adj[1] + ' ' if adj else ''}{en_sg}", False


def clothing(rng: random.Random) -> tuple[str, str]:
    de, g, en = rng.choice(CLOTHES)
    col_de, col_en = rng.choice(COLOURS)
    prep_de, prep_en = rng.choice([("in", "in"), ("mit", "with")])
    art = {"m": "einem", "f": "einer", "n": "einem"}[g]
    return f"{prep_de} {art} {col_de}en {de}", f"{prep_en} a {col_en} {en}"


def obj(rng: random.Random) -> tuple[str, str]:
    de, g, en = rng.choice(OBJECTS)
    adj = rng.choice(OBJECT_ADJ) if rng.random() < 0.7 else None
    art = {"m": "einen", "f": "eine", "n": "ein"}[g]
    end = {"m": "en", "f": "e", "n": "es"}[g]
    en_word = adj[1] if adj else en
    en_art = "an" if en_word[0] in "aeiou" else "a"
    return f"{art} {adj[0] + end + ' ' if adj else ''}{de}", f"{en_art} {adj[1] + ' ' if adj else ''}{en}"


def sentence(rng: random.Random) -> tuple[str, str]:
    subj_de, subj_en, plural = subject(rng)
    if rng.random() < 0.35 and not plural and subj_de.split()[-1] not in ANIMALS:
        c_de, c_en = clothing(rng)
        subj_de, subj_en = f"{subj_de} {c_de}", f"{subj_en} {c_en}"
    if rng.random() < 0.4:
        sg, pl, en = rng.choice(TRANSITIVE)
        o_de, o_en = obj(rng)
        verb_de, verb_en = f"{pl if plural else sg}", f"{'are' if plural else 'is'} {en} {o_en}"
        rest_de = o_de
    else:
        sg, pl, en = rng.choice(INTRANSITIVE)
        verb_de, verb_en, rest_de = (pl if plural else sg), f"{'are' if plural else 'is'} {en}", ""
    place = rng.choice(PLACES) if rng.random() < 0.75 else None
    # German is verb-second: a fronted place pushes the subject behind the verb; "Fahrrad" stays at the end.
    particle = ""
    if verb_de.endswith(" Fahrrad"):
        verb_de, particle = verb_de[: -len(" Fahrrad")], "Fahrrad"
    if place and rng.random() < 0.3:
        p = place[0][0].upper() + place[0][1:]
        s = subj_de[0].lower() + subj_de[1:]  # subjects open with an article or a number word, never a noun
        de_words = [p, verb_de, s, rest_de, particle]
    else:
        de_words = [subj_de, verb_de, rest_de, place[0] if place else "", particle]
    de = " ".join(w for w in de_words if w) + "."
    en = " ".join(w for w in [subj_en, verb_en, place[1] if place else ""] if w) + "."
    return de, en[0].upper() + en[1:]


def main() -> None:
    rng = random.Random(SEED)
    seen: set[str] = set()
    pairs: list[tuple[str, str]] = []
    while len(pairs) < N_TRAIN + N_DEV:
        de, en = sentence(rng)
        if de not in seen:
            seen.add(de)
            pairs.append((de, en))
    out = HERE / "translate"
    out.mkdir(exist_ok=True)
    for name, rows in (("train", pairs[:N_TRAIN]), ("dev", pairs[N_TRAIN:])):
        with open(out / f"{name}.tsv", "w", encoding="utf-8", newline="\n") as f:
            f.write("source\ttarget\n")
            for de, en in rows:
                f.write(f"{de}\t{en}\n")
        print(f"wrote {out / name}.tsv: {len(rows)} pairs")


if __name__ == "__main__":
    main()

"""`arith`: project-generated multi-step arithmetic word problems (gsm8k style, answer in \\boxed{}).

Each problem starts a quantity and changes it 2-4 times (buy, give away, packs of k, double,
split equally); the worked solution is one short equation per step, then the boxed answer:
"4 * 6 = 24. 35 + 24 = 59. 59 - 17 = 42. \\boxed{42}". Values stay in 0..999 and every division
is exact, so a small model can learn the task.

Splits come from disjoint seeds, and the training stream also skips any text that is in the test
set, so train and test never share a problem. `prepare` is the registry's preparer (no raw files:
the rows are generated), `train_problems` feeds `xp.model.train`.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Iterator, Optional

TEST_SIZE = 3000
TEST_SEED = "arith-test-v1"
TRAIN_SEED = "arith-train-v1"
MAX_VALUE = 999

NAMES = [("Ann", "she"), ("Ben", "he"), ("Cara", "she"), ("Dan", "he"), ("Eva", "she"), ("Finn", "he"),
         ("Gia", "she"), ("Hugo", "he"), ("Ivy", "she"), ("Jack", "he"), ("Kim", "she"), ("Leo", "he"),
         ("Mia", "she"), ("Noah", "he"), ("Omar", "he"), ("Pia", "she"), ("Raj", "he"), ("Sara", "she"),
         ("Tom", "he"), ("Uma", "she"), ("Vic", "he"), ("Wes", "he"), ("Zoe", "she"), ("Lily", "she")]
ITEMS = ["apples", "pens", "cards", "books", "coins", "stickers", "marbles", "eggs", "shells", "cookies",
         "stamps", "toys", "beads", "rocks", "candies", "pencils"]
CONTAINERS = ["packs", "boxes", "bags", "jars"]
TIMES = {2: "doubles", 3: "triples"}


def _step_add(rng: random.Random, v: int, who: str) -> Optional[tuple[str, str, int]]:
    b = rng.randint(2, 99)
    if v + b > MAX_VALUE:
        return None
    text = rng.choice([f"{who} buys {b} more.", f"{who} finds {b} more.", f"{who} gets {b} more."])
    return text, f"{v} + {b} = {v + b}.", v + b


def _step_sub(rng: random.Random, v: int, who: str) -> Optional[tuple[str, str, int]]:
    if v < 3:
        return None
    b = rng.randint(1, min(v - 1, 99))
    text = rng.choice([f"{who} gives away {b}.", f"{who} loses {b}.", f"{who} sells {b}.", f"{who} eats {b}."])
    return text, f"{v} - {b} = {v - b}.", v - b


def _step_packs(rng: random.Random, v: int, who: str) -> Optional[tuple[str, str, int]]:
    k, c = rng.randint(2, 9), rng.randint(2, 12)
    if v + k * c > MAX_VALUE:
        return None
    text = f"{who} buys {k} {rng.choice(CONTAINERS)} with {c} each."
    return text, f"{k} * {c} = {k * c}. {v} + {k * c} = {v + k * c}.", v + k * c


def _step_mul(rng: random.Random, v: int, who: str) -> Optional[tuple[str, str, int]]:
    k = rng.randint(2, 5)
    if v * k > MAX_VALUE or v < 2:
        return None
    mid = who.lower() if who in ("He", "She") else who
    text = f"Then {mid} {TIMES[k]} them." if k in TIMES and rng.random() < 0.5 else \
        f"Then {mid} has {k} times as many."
    return text, f"{v} * {k} = {v * k}.", v * k


def _step_div(rng: random.Random, v: int, who: str) -> Optional[tuple[str, str, int]]:
    ks = [k for k in range(2, 10) if v % k == 0 and v // k >= 1]
    if not ks:
        return None
    k = rng.choice(ks)
    text = f"{who} splits them into {k} equal piles and keeps one pile."
    return text, f"{v} / {k} = {v // k}.", v // k


STEPS = [_step_add, _step_sub, _step_packs, _step_mul, _step_div]
STEP_WEIGHTS = [3, 3, 1.5, 1.5, 1]


def make_problem(rng: random.Random) -> dict:
    """One problem row: problem text, worked solution (ending in the boxed answer), integer answer."""
    name, pron = rng.choice(NAMES)
    item = rng.choice(ITEMS)
    v = rng.randint(2, 99)
    sentences, equations = [f"{name} has {v} {item}."], []
    n_eq = rng.choice([2, 2, 3, 3, 3, 4])                  # equations in the solution (packs take two)
    while sum(e.count("=") for e in equations) < n_eq:
        who = pron.capitalize() if rng.random() < 0.7 else name
        step = rng.choices(STEPS, STEP_WEIGHTS)[0](rng, v, who)
        if step is None or sum(e.count("=") for e in equations) + step[1].count("=") > n_eq:
            continue
        text, eq, v = step
        sentences.append(text)
        equations.append(eq)
    sentences.append(f"How many {item} does {name} have now?")
    solution = " ".join(equations) + f" \\boxed{{{v}}}"
    return {"problem": " ".join(sentences), "reference_solution": solution, "expected_answer": v}


def _rng(seed: str) -> random.Random:
    return random.Random(seed)  # str seeds hash with sha512: identical on every machine and run


def test_problems(n: int = TEST_SIZE) -> list[dict]:
    """The test split: the first n distinct problems of the test seed (ids arith-0 ...)."""
    rng, seen, rows = _rng(TEST_SEED), set(), []
    while len(rows) < n:
        row = make_problem(rng)
        if row["problem"] in seen:
            continue
        seen.add(row["problem"])
        rows.append({"id": f"arith-{len(rows)}", **row})
    return rows


def train_problems(n: int, seed: int = 0, shard: int = 0, test: Optional[set] = None) -> Iterator[dict]:
    """n training problems from the train seed (varied by `seed` and `shard`), none in the test split."""
    test = test if test is not None else {r["problem"] for r in test_problems()}
    rng = _rng(f"{TRAIN_SEED}-{seed}-{shard}")
    made = 0
    while made < n:
        row = make_problem(rng)
        if row["problem"] in test:
            continue
        made += 1
        yield row


def prepare(paths: list[Path]) -> list[dict]:
    """Registry preparer: the test split (generated; `paths` is empty, there are no raw files)."""
    return test_problems()

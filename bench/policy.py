"""Benchmark: purpose decisions and cookie lookups from the compiled policy.

Each figure is a ratio against a baseline measured in the same run:
- decisions: ``CompiledPolicy.decide`` vs. walking the policy model for the same answer
  (goal: >= 500,000 decisions/s on one core, and >= 2x the walk; the walk's cost grows
  with the size of the policy while the compiled lookup's does not, so the seed's small
  policy is the walk's best case);
- cookie lookups: ``tracking_for_name`` vs. matching every declared name and pattern in turn
  (goal: >= 2x the scan).
"""

from __future__ import annotations

import fnmatch
import sys
import time
from collections.abc import Callable
from pathlib import Path

from troth.policy.compiled import compile_policy
from troth.policy.loader import load_policy
from troth.policy.model import Policy
from troth.policy.vocabulary import vocabulary

SEED = Path(__file__).resolve().parents[1] / "examples" / "seed-service" / "policy.yaml"


def rate(fn: Callable[[], object], n: int) -> float:
    best = 0.0
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        best = max(best, n / (time.perf_counter() - start))
    return best


def naive_decide(policy: Policy, purpose: str, categories: list[str], consents: set[str]) -> bool:
    vocab = vocabulary()
    for category in categories:
        ok = False
        for p in policy.purposes:
            if p.id != purpose:
                continue
            for a in p.activities:
                if category not in a.categories:
                    continue
                kind = vocab.basis_kind(vocab.legal_basis(a.basis))
                if kind != "consent" or a.consent in consents:
                    ok = True
        if not ok:
            return False
    return True


def naive_cookie(policy: Policy, name: str) -> object:
    for t in policy.tracking:
        if t.name == name or (t.pattern and fnmatch.fnmatchcase(name, t.pattern)):
            return t
    return None


def main() -> int:
    policy = load_policy(SEED).policy
    compiled = compile_policy(policy)
    cases = [
        (a.purpose, sorted(a.categories), {a.consent} if a.consent else set())
        for a in compiled.activities.values()
    ]
    i = 0

    def fast() -> object:
        nonlocal i
        purpose, cats, consents = cases[i % len(cases)]
        i += 1
        return compiled.decide(purpose, cats, consents)

    j = 0

    def slow() -> object:
        nonlocal j
        purpose, cats, consents = cases[j % len(cases)]
        j += 1
        return naive_decide(policy, purpose, cats, consents)

    names = [t.name or (t.pattern or "").replace("*", "x1") for t in policy.tracking] + ["unknown"]
    k = 0

    def cookie_fast() -> object:
        nonlocal k
        k += 1
        return compiled.tracking_for_name(names[k % len(names)])

    m = 0

    def cookie_slow() -> object:
        nonlocal m
        m += 1
        return naive_cookie(policy, names[m % len(names)])

    d_fast, d_slow = rate(fast, 200_000), rate(slow, 20_000)
    c_fast, c_slow = rate(cookie_fast, 200_000), rate(cookie_slow, 50_000)
    rows = [
        (
            "purpose decisions/s",
            d_fast,
            d_slow,
            ">= 500k/s and >= 2x",
            d_fast >= 500_000 and d_fast / d_slow >= 2,
        ),
        ("cookie lookups/s", c_fast, c_slow, ">= 2x", c_fast / c_slow >= 2),
    ]
    print(
        f"bench/policy.py — seed policy: {len(cases)} activities, "
        f"{len(policy.tracking)} tracking technologies"
    )
    print(
        f"| {'measure':<22} | {'troth':>12} | {'baseline':>12} | {'ratio':>7} "
        f"| {'goal':<20} | met |"
    )
    print(f"|{'-' * 24}|{'-' * 14}|{'-' * 14}|{'-' * 9}|{'-' * 22}|-----|")
    for name, fast_rate, slow_rate, goal, met in rows:
        print(
            f"| {name:<22} | {fast_rate:>12,.0f} | {slow_rate:>12,.0f} "
            f"| {fast_rate / slow_rate:>6.1f}x "
            f"| {goal:<20} | {'yes' if met else 'NO':<3} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Planted secrets and personal data in a real night: how many values reach a model request or anything stored.

Every entry of src/nightloop/testing/secrets_corpus.py (names, addresses, SSN/NINO/DNI, passports, IPs, dates of
birth, IDN and spelled-out emails, phones without separators, cards with dots, IBANs with dashes, AWS, Stripe,
Google, Hugging Face and Slack-webhook keys, PEM keys, passwords in English and German, an email inside a
conversation id) is planted in its own conversation; one real night runs with the judge and the guard on the
real OpenAI SDK against a loopback server. Printed per type: values in the bytes the server received (model
requests), in the derived tables (every table but the raw `conversations`, `spans` and `quarantine`), in the
reports (`nightloop report`, `--json`, `--markdown`), in CLI output (`failures`, `review`, `review show`, `trust`)
and in the Prefect artifacts the nightly flow creates; then where each value was found.

    .venv/bin/python benchmarks/redaction.py
"""

from __future__ import annotations

import sys
import tempfile
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from nightloop.testing.redaction_nights import GROUPS, place_group, run_secrets_night  # noqa: E402
from nightloop.testing.secrets_corpus import PLANTED  # noqa: E402


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="nightloop-redaction-") as tmp:
        leaks, stats = run_secrets_night(list(PLANTED), Path(tmp))
    by_kind: dict[str, list[int]] = defaultdict(lambda: [0] * (len(GROUPS) + 1))
    for index, planted in enumerate(PLANTED):
        row = by_kind[planted.kind]
        row[0] += 1
        groups = {place_group(place) for place in leaks.found.get(index, [])}
        for column, group in enumerate(GROUPS, 1):
            row[column] += int(group in groups)
    print(f"planted values: {len(PLANTED)} in {len(by_kind)} types; {stats}")
    print("values found (per type) in:")
    print(f"{'type':<26}{'planted':>8}" + "".join(f"{group:>19}" for group in GROUPS))
    for kind, row in by_kind.items():
        print(f"{kind:<26}{row[0]:>8}" + "".join(f"{n:>19}" for n in row[1:]))
    totals = [sum(row[i] for row in by_kind.values()) for i in range(len(GROUPS) + 1)]
    print(f"{'total':<26}{totals[0]:>8}" + "".join(f"{n:>19}" for n in totals[1:]))
    for index, found in sorted(leaks.found.items()):
        print(f"  {PLANTED[index].kind}: {', '.join(found)}")


if __name__ == "__main__":
    main()

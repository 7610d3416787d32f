"""Write the template's `AWS::Athena::NamedQuery` resources from the SQL files (CloudFormation cannot
include a file), between two marker lines of infra/template.yaml; nothing else in the file is touched.

    python -m traderai.analytics.template           # rewrite the generated block
    python -m traderai.analytics.template --check   # exit 1 if the template is out of date
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from traderai.analytics.queries import NAMED_QUERIES, NamedQuery, compacted
from traderai.infra import TEMPLATE_PATH

BEGIN = "  # BEGIN named queries, generated from src/traderai/sql/ by `python -m traderai.analytics.template`\n"
END = "  # END named queries\n"


def _resource(logical_id: str, name: str, description: str, sql: str) -> str:
    body = "".join(f"        {line}".rstrip() + "\n" for line in sql.rstrip("\n").split("\n"))
    return (f"  {logical_id}:\n"
            f"    Type: AWS::Athena::NamedQuery\n"
            f"    Properties:\n"
            f"      Name: {json.dumps(name)}\n"
            f"      Description: {json.dumps(description)}\n"
            f"      Database: !Ref AnalyticsDatabase\n"
            f"      WorkGroup: !Ref AnalyticsWorkGroup\n"
            f"      QueryString: |\n{body}")


def _description(query: NamedQuery, parquet: bool) -> str:
    where = ("Parquet tables (days compacted by CompactFunction)" if parquet
             else "JSON log tables (every day, today included)")
    return f"{query.question} Reads the {where}. Parameters: {', '.join(query.parameters)} (quoted 'YYYY-MM-DD')."


def render_named_queries() -> str:
    """The generated block: each named query over the JSON logs and, where history is the point, the
    same query over the compacted Parquet tables."""
    blocks = []
    for query in NAMED_QUERIES:
        blocks.append(_resource(query.logical_id, query.title, _description(query, False), query.sql))
        if query.parameters != ("since_day", "since_day"):  # "latest" wants today's JSON, never compacted
            blocks.append(_resource(f"{query.logical_id}Parquet", f"{query.title} (Parquet)",
                                    _description(query, True), compacted(query.sql)))
    return BEGIN + "\n".join(blocks) + END


def generated_block(text: str) -> str:
    """The block between the markers in a template's text (markers included)."""
    start, end = text.index(BEGIN), text.index(END) + len(END)
    return text[start:end]


def sync_template(path: Path = TEMPLATE_PATH, check: bool = False) -> bool:
    """Rewrite (or, with `check`, only compare) the generated block; True when it was already current."""
    text = path.read_text(encoding="utf-8")
    current, wanted = generated_block(text), render_named_queries()
    if current == wanted:
        return True
    if not check:
        path.write_text(text.replace(current, wanted), encoding="utf-8")
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the template is out of date")
    parser.add_argument("--template", type=Path, default=TEMPLATE_PATH)
    args = parser.parse_args(argv)
    current = sync_template(args.template, check=args.check)
    if args.check and not current:
        print(f"{args.template}: named queries differ from src/traderai/sql/; run "
              "`python -m traderai.analytics.template`", file=sys.stderr)
        return 1
    print(f"{args.template}: named queries {'up to date' if current else 'rewritten'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

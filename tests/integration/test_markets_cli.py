"""`traderai markets check|put|get` against moto: a bad file is refused before anything is uploaded."""

from __future__ import annotations

from pathlib import Path

import pytest

from traderai.cli import main

Aws = object  # the fixture's type lives in conftest.py


def test_put_uploads_a_valid_list_that_get_and_the_plan_read_back(aws: Aws, tmp_path: Path, capsys) -> None:
    listing = tmp_path / "markets.csv"
    listing.write_text("symbol\nbtc_usdt\nETH/USDT, majors\n")
    assert main(["markets", "check", str(listing)]) == 0
    assert main(["markets", "put", str(listing), "--bucket", aws.bucket]) == 0
    assert "2 markets uploaded" in capsys.readouterr().out
    body = aws.s3.get_object(Bucket=aws.bucket, Key="config/markets.csv")["Body"].read()
    assert body == b"symbol\nBTC/USDT\nETH/USDT\n"
    assert main(["markets", "get", "--bucket", aws.bucket]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == ["BTC/USDT", "ETH/USDT"]


def test_put_refuses_a_bad_list_naming_the_line_and_uploads_nothing(aws: Aws, tmp_path: Path, capsys) -> None:
    listing = tmp_path / "markets.csv"
    listing.write_text("BTC/USDT\nBTCUSDT\n")
    assert main(["markets", "put", str(listing), "--bucket", aws.bucket]) == 1
    assert capsys.readouterr().err.strip() == f"traderai markets put: {listing} line 2: 'BTCUSDT' is not BASE/QUOTE " \
                                              "(e.g. BTC/USDT)"
    assert aws.objects("config/") == []
    assert main(["markets", "get", "--bucket", aws.bucket]) == 1
    assert "no such object" in capsys.readouterr().err


@pytest.mark.parametrize("args", [["markets", "check", "/nonexistent/markets.csv"]])
def test_a_missing_file_is_an_error_not_a_traceback(args: list[str], capsys) -> None:
    assert main(args) == 1
    assert "No such file" in capsys.readouterr().err


def test_traderai_tick_reads_its_markets_from_the_list_in_the_local_bucket(tmp_path: Path, capsys) -> None:
    listing = tmp_path / "markets.csv"
    listing.write_text("symbol\nETH/USDT\nsol_usdt\n")
    assert main(["tick", "--ticks", "1", "--start", "2025-04-07T14:00:00Z", "--market-list", str(listing)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("2025-04-07 14:00 UTC  predictions=2 ")
    assert sorted(line.split(":")[0].split()[-1] for line in lines[1:] if "Signal" in line) == ["ETH/USDT", "SOL/USDT"]

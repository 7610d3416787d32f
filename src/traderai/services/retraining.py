"""Scheduled retraining, one step per function of the state machine: train -> evaluate -> promote or keep.

- **train** fits the shipped recipe (`traderai.train.train`, the very function `traderai train`
  calls, with its default `TrainConfig`) on the last TRAIN_DAYS of the archive before the evaluation
  window, and writes each market's candidate to the registry under its own model_id. It never moves a
  pointer. A market whose archive window has bad candles, a gap longer than RETRAIN_MAX_GAP_CANDLES or
  too little history is refused with its reason (never trained on invented data).
- **evaluate** scores champion and challenger on the most recent window neither was trained on (after the
  later of their last training candles, plus the label horizon) and decides promote or keep.
- **decide** moves the pointer of the markets to promote (conditional write: an overlapping retraining
  that moved it first wins, this one backs off), and writes the decision, with both models' figures, to
  `retraining/dt=YYYY-MM-DD/{run_id}.json` (one JSON line per market: the Glue table `retraining`). S3
  failing on one market's move (a botocore error) is that market's outcome, `failed` (reason
  `promotion_failed`, serving what its pointer names when read back); the other markets go on, so the
  markets moved before it are recorded as promoted.

Promotion rule (per market): the challenger loads; it has edge evidence the gate can read (missing or
malformed evidence never passes; with REQUIRE_PROVEN_EDGE also a side whose mean - 2 SE > 0); and on the
unseen window it is not worse than the champion on log loss nor on Brier beyond the tolerance. The
tolerance is the noise of the comparison itself: TOLERANCE_Z (2) standard errors of the paired per-row
difference, the standard error inflated by sqrt(horizon) because overlapping labels (each row's label
shares horizon-1 candles with the next) make neighbouring differences correlated. A challenger is
refused only when it is worse by more than the window can tell apart from chance; a better one passes.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import numpy as np
from aws_lambda_powertools.metrics import MetricUnit
from botocore.exceptions import BotoCoreError, ClientError

from traderai.adapters import model_registry as registry
from traderai.adapters.candle_archive import CandleArchive
from traderai.contracts import (
    SIDES,
    TIMEFRAME_SECONDS,
    Candles,
    ContractError,
    SettingsError,
    iso_utc,
    parse_iso_utc,
)
from traderai.core.expected_value import edge_verdict
from traderai.core.features import WARMUP_CANDLES
from traderai.events import EventError
from traderai.market import BadCandlesError
from traderai.market.validation import validate_candles
from traderai.model.serving import ModelError, ModelNotFoundError, ServedModel
from traderai.observability import logger, metrics
from traderai.settings import Settings

RETRAINING_PREFIX = "retraining"
MIN_EVAL_ROWS = 200


@dataclass(frozen=True, slots=True)
class RetrainSettings:
    """The retraining's own settings (environment variables named in SettingsError)."""

    train_days: int = 180
    eval_days: int = 14
    expiry_warning_days: float = 7.0
    max_gap_candles: int = 16  # 4 h at 15m: longer than an exchange maintenance window
    min_history_fraction: float = 0.9  # of TRAIN_DAYS the archive must cover
    tolerance_z: float = 2.0
    require_proven_edge: bool = False
    archive_prefix: str = "candles"
    backfill_days: int = 365  # history the archive fetches for a market it has not archived yet

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RetrainSettings:
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for attr, name, parse in (("train_days", "TRAIN_DAYS", int), ("eval_days", "EVAL_DAYS", int),
                                  ("expiry_warning_days", "EXPIRY_WARNING_DAYS", float),
                                  ("max_gap_candles", "RETRAIN_MAX_GAP_CANDLES", int),
                                  ("tolerance_z", "RETRAIN_TOLERANCE_Z", float),
                                  ("backfill_days", "ARCHIVE_BACKFILL_DAYS", int)):
            text = env.get(name, "").strip()
            if text:
                try:
                    values[attr] = parse(text)
                except ValueError as exc:
                    raise SettingsError(f"{name}: {text!r} is not a number") from exc
        proven = env.get("REQUIRE_PROVEN_EDGE", "").strip().lower()
        if proven:
            if proven not in ("true", "false"):
                raise SettingsError(f"REQUIRE_PROVEN_EDGE: {proven!r} is not true or false")
            values["require_proven_edge"] = proven == "true"
        if env.get("ARCHIVE_PREFIX", "").strip():
            values["archive_prefix"] = env["ARCHIVE_PREFIX"].strip()
        settings = cls(**values)
        for name, value, low, high in (("TRAIN_DAYS", settings.train_days, 7, 3650),
                                       ("EVAL_DAYS", settings.eval_days, 1, 90),
                                       ("EXPIRY_WARNING_DAYS", settings.expiry_warning_days, 0, 90),
                                       ("RETRAIN_MAX_GAP_CANDLES", settings.max_gap_candles, 0, 10_000),
                                       ("RETRAIN_TOLERANCE_Z", settings.tolerance_z, 0, 10),
                                       ("ARCHIVE_BACKFILL_DAYS", settings.backfill_days, 1, 3650)):
            if not low <= value <= high:
                raise SettingsError(f"{name}: {value} is outside {low}..{high}")
        return settings


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _iso_ms(ms: int) -> str:
    return iso_utc(datetime.fromtimestamp(ms / 1000, tz=UTC))


def _parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def run_id_for(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


# ---------------------------------------------------------------- train

def check_window(candles: Candles, start_ms: int, end_ms: int, retrain: RetrainSettings) -> str | None:
    """Why this window of archived candles must not be trained on, or None if it may."""
    step_ms = TIMEFRAME_SECONDS[candles.timeframe] * 1000
    if len(candles) == 0:
        return "insufficient_history: no archived candles in the window"
    covered = (int(candles.open_time_ms[-1]) + step_ms - int(candles.open_time_ms[0])) / (end_ms - start_ms)
    if covered < retrain.min_history_fraction:
        return (f"insufficient_history: the archive covers {covered:.0%} of the {retrain.train_days}-day window "
                f"({_iso_ms(int(candles.open_time_ms[0]))} to {_iso_ms(int(candles.open_time_ms[-1]))})")
    try:
        report = validate_candles(candles, datetime.fromtimestamp(end_ms / 1000, tz=UTC),
                                  TIMEFRAME_SECONDS[candles.timeframe], check_stale=False)
    except BadCandlesError as exc:
        return f"bad_candles: {exc}"
    if report.largest_gap_candles > retrain.max_gap_candles:
        return (f"gap: {report.largest_gap_candles} candles missing in a row (RETRAIN_MAX_GAP_CANDLES "
                f"{retrain.max_gap_candles}); {report.missing_candles} missing in {report.gaps} gap(s)")
    return None


def train_step(settings: Settings, retrain: RetrainSettings, archive: CandleArchive, s3: Any, now: datetime,
               *, run_id: str | None = None) -> dict[str, Any]:
    """Fit the shipped recipe on every market whose window is clean; write the candidates (no pointer move)."""
    from traderai.train import TrainConfig, train  # TrainingCodeLayer: in Train/EvaluateFunction only

    bucket = settings.required("bucket_name")
    step_ms = settings.timeframe_seconds * 1000
    end_ms = _ms(now) - _ms(now) % step_ms - retrain.eval_days * 86_400_000
    start_ms = end_ms - retrain.train_days * 86_400_000
    run_id = run_id or run_id_for(now)
    accepted: list[Candles] = []
    refused: dict[str, str] = {}
    for symbol in settings.markets:
        candles = archive.load(symbol, settings.timeframe, start_ms, end_ms)
        reason = check_window(candles, start_ms, end_ms, retrain)
        if reason:
            refused[symbol] = reason
            logger.warning("market not retrained", extra={"symbol": symbol, "reason": reason.split(":")[0],
                                                         "detail": reason, "run_id": run_id})
        else:
            accepted.append(candles)
    candidates: dict[str, str] = {}
    failure = None
    if accepted:
        trained_at = now.astimezone(UTC).replace(microsecond=0)
        try:
            result = train(accepted, [c.symbol for c in accepted], settings.timeframe, TrainConfig(), trained_at,
                           sources=[f"s3://{bucket}/{archive.market_prefix(c.symbol, settings.timeframe)}"
                                    for c in accepted])
        except ValueError as exc:  # too few rows to train/calibrate/test honestly
            failure = f"training_refused: {exc}"
            refused.update({c.symbol: failure for c in accepted})
        else:
            for symbol, manifest in result.manifests.items():
                registry.write_model(s3, bucket, settings.model_prefix, result.artifact, manifest)
                candidates[symbol] = manifest["model_id"]
    return {"run_id": run_id, "now": iso_utc(now), "timeframe": settings.timeframe,
            "train_from": _iso_ms(start_ms), "train_until": _iso_ms(end_ms),
            "candidates": candidates, "refused": refused}


# ---------------------------------------------------------------- evaluate

def log_loss_rows(labels: np.ndarray, probability: np.ndarray) -> np.ndarray:
    p = np.clip(probability, 1e-15, 1 - 1e-15)
    rows: np.ndarray = -(labels * np.log(p) + (1 - labels) * np.log1p(-p))
    return rows


def brier_rows(labels: np.ndarray, probability: np.ndarray) -> np.ndarray:
    rows: np.ndarray = (probability - labels) ** 2
    return rows


def not_worse(challenger: np.ndarray, champion: np.ndarray, horizon: int, z: float) -> dict[str, float | bool]:
    """Paired comparison of per-row losses: mean difference (challenger - champion), its tolerance, verdict."""
    difference = challenger - champion
    n = difference.shape[0]
    se = float(difference.std(ddof=1) / math.sqrt(n) * math.sqrt(max(horizon, 1))) if n > 1 else float("inf")
    tolerance = z * se
    mean = float(difference.mean())
    return {"difference": mean, "tolerance": tolerance, "passes": bool(mean <= tolerance)}


def evidence_check(manifest: Mapping[str, Any], require_proven: bool) -> tuple[bool, str]:
    """Does the manifest's `edge_evidence` ({LONG|SHORT: {n, mean_net_pct, se_pct}}) pass the gate's rules?

    Missing evidence, or a side not in the contract's shape (n a non-negative integer; with n >= 2 a
    finite mean and a finite non-negative SE), never passes. Evidence in that shape passes: the edge gate
    (`core.expected_value.edge_verdict`, quoted in the record) then marks each signal tradeable or paper
    from these very figures, so an unproven model publishes paper signals only. With REQUIRE_PROVEN_EDGE
    a side must also be proven (mean - 2 SE > 0).
    """
    evidence = manifest.get("edge_evidence")
    if not isinstance(evidence, Mapping) or not evidence:
        return False, "no_evidence: the manifest has no edge_evidence"
    if not any(side in evidence for side in SIDES):
        return False, f"no_evidence: edge_evidence names neither {' nor '.join(SIDES)}"
    messages, proven = [], False
    for side in SIDES:
        entry = evidence.get(side)
        if entry is None:  # a side left out is unproven (the contract's rule), not malformed
            messages.append(f"{side}: no out-of-sample evidence, unproven")
            continue
        n = entry.get("n") if isinstance(entry, Mapping) else None
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            return False, f"malformed_evidence: {side} has no signal count n"
        if n < 2:
            messages.append(f"{side}: {n} out-of-sample signal(s), unproven")
            continue
        verdict = edge_verdict(entry, side)
        if verdict.lower_bound_pct is None:
            return False, f"malformed_evidence: {verdict.message}"
        proven = proven or verdict.proven
        messages.append(verdict.message)
    text = "; ".join(messages)
    if require_proven and not proven:
        return False, f"no_proven_edge: {text}"
    return True, f"evidence: {text}"


def _last_seen_ms(model: ServedModel) -> int:
    """Open time of the newest candle the model was fitted or calibrated on (its test stretch is unseen);
    the manifest's last candle when it does not say."""
    data = model.manifest.get("data", {})
    seen = [part.get("to") for part in (data.get("train"), data.get("calibration")) if isinstance(part, Mapping)]
    if seen and all(isinstance(t, str) for t in seen):
        return max(_ms(_parse_iso(cast(str, t))) for t in seen)
    return _ms(_parse_iso(data["last_candle"]))


def _scores(model: ServedModel, candles: Candles, from_ms: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(open times, labels, probabilities) of the complete rows at or after from_ms, labelled as the model's
    manifest says (its horizon and labeling: what its probability means)."""
    from traderai.train import build_dataset  # TrainingCodeLayer: in Train/EvaluateFunction only

    data = build_dataset([candles], model.horizon, str(model.manifest.get("labeling", "direction")))
    keep = data.open_time_ms >= from_ms
    features = data.features[keep]
    return data.open_time_ms[keep], data.labels[keep], model.predict_proba(features)


def evaluate_market(symbol: str, champion: ServedModel | None, challenger: ServedModel, archive: CandleArchive,
                    timeframe: str, now: datetime, retrain: RetrainSettings) -> dict[str, Any]:
    """Both models' figures on the newest window neither trained on, and the verdict with its reasons."""
    step_ms = TIMEFRAME_SECONDS[timeframe] * 1000
    horizon = max(challenger.horizon, champion.horizon if champion else 0)
    seen = max(_last_seen_ms(challenger), _last_seen_ms(champion) if champion else 0)
    eval_from = seen + (horizon + 1) * step_ms
    candles = archive.load(symbol, timeframe, eval_from - (WARMUP_CANDLES + 10) * step_ms, _ms(now) + 1)
    out: dict[str, Any] = {"eval_from": _iso_ms(eval_from), "rows": 0, "reasons": []}
    times, labels, p_challenger = _scores(challenger, candles, eval_from) if len(candles) else (
        np.empty(0), np.empty(0), np.empty(0))
    rows = int(labels.shape[0])
    out["rows"] = rows
    if rows:
        out["eval_to"] = _iso_ms(int(times.max()))
    if rows < MIN_EVAL_ROWS:
        out["reasons"].append(f"too_few_unseen_rows: {rows} < {MIN_EVAL_ROWS} rows after {_iso_ms(eval_from)}")
        out["verdict"] = "keep"
        return out
    ch_ll, ch_br = log_loss_rows(labels, p_challenger), brier_rows(labels, p_challenger)
    out["challenger"] = {"log_loss": float(ch_ll.mean()), "brier": float(ch_br.mean())}
    same_question = champion is not None and champion.manifest.get("labeling", "direction") == \
        challenger.manifest.get("labeling", "direction") and champion.horizon == challenger.horizon
    if champion is not None and same_question:
        _, champion_labels, p_champion = _scores(champion, candles, eval_from)
        if champion_labels.shape != labels.shape:
            raise ValueError(f"{symbol}: champion and challenger scored on different rows")
        reference = "champion"
    else:
        # No champion, or one answering another question (a changed labeling or horizon): the challenger
        # must at least beat the constant forecast of its own training up-rate on its own labels.
        rate = float(challenger.manifest.get("metrics", {}).get("train", {}).get("up_rate", 0.5))
        p_champion = np.full(rows, rate)
        reference = "constant_training_up_rate"
        out["reasons"].append("no comparable champion: compared with the constant forecast "
                              f"{rate:.4f} (the challenger's training up-rate)")
    cm_ll, cm_br = log_loss_rows(labels, p_champion), brier_rows(labels, p_champion)
    out["champion"] = {"log_loss": float(cm_ll.mean()), "brier": float(cm_br.mean()), "reference": reference}
    out["log_loss"] = not_worse(ch_ll, cm_ll, horizon, retrain.tolerance_z)
    out["brier"] = not_worse(ch_br, cm_br, horizon, retrain.tolerance_z)
    passes = True
    for metric in ("log_loss", "brier"):
        if not out[metric]["passes"]:
            passes = False
            out["reasons"].append(f"worse_{metric}: challenger - champion = {out[metric]['difference']:+.5f} > "
                                  f"tolerance {out[metric]['tolerance']:.5f}")
    evidence_ok, evidence_text = evidence_check(challenger.manifest, retrain.require_proven_edge)
    out["evidence"] = evidence_text
    if not evidence_ok:
        passes = False
        out["reasons"].append(evidence_text)
    out["verdict"] = "promote" if passes else "keep"
    return out


def evaluate_step(settings: Settings, retrain: RetrainSettings, archive: CandleArchive, s3: Any,
                  trained: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """Per market: champion and challenger loaded from the registry, scored, verdict and reasons."""
    bucket, prefix, timeframe = settings.required("bucket_name"), settings.model_prefix, settings.timeframe
    markets: dict[str, Any] = {}
    for symbol in settings.markets:
        entry: dict[str, Any] = {"symbol": symbol, "challenger_model_id": trained.get("candidates", {}).get(symbol)}
        champion: ServedModel | None = None
        try:
            pointer, _ = registry.read_pointer(s3, bucket, prefix, symbol, timeframe)
            entry["champion_model_id"] = pointer["model_id"] if pointer else None
            if pointer:
                champion = registry.load_model_id(s3, bucket, prefix, symbol, timeframe, pointer["model_id"])
                entry["champion_expires_at"] = iso_utc(champion.expires_at)
                entry["champion_days_to_expiry"] = round((champion.expires_at - now).total_seconds() / 86400, 3)
        except (ModelError, ValueError) as exc:
            entry["champion_error"] = f"champion does not load: {exc}"
        if entry["challenger_model_id"] is None:
            entry["verdict"] = "keep"
            entry["reasons"] = [trained.get("refused", {}).get(symbol, "no challenger trained")]
            markets[symbol] = entry
            continue
        try:
            challenger = registry.load_model_id(s3, bucket, prefix, symbol, timeframe, entry["challenger_model_id"])
        except (ModelError, ModelNotFoundError, ValueError, KeyError) as exc:
            entry["verdict"], entry["reasons"] = "keep", [f"challenger_unloadable: {exc}"]
            markets[symbol] = entry
            continue
        try:
            entry.update(evaluate_market(symbol, champion, challenger, archive, timeframe, now, retrain))
        except (ValueError, KeyError, BadCandlesError) as exc:
            entry["verdict"], entry["reasons"] = "keep", [f"evaluation_failed: {exc}"]
        markets[symbol] = entry
    return {**{k: trained[k] for k in ("run_id", "now", "timeframe", "train_from", "train_until") if k in trained},
            "markets": markets, "promotions": sorted(s for s, m in markets.items() if m["verdict"] == "promote")}


# ---------------------------------------------------------------- decide (promote or keep) and record

def decide_step(settings: Settings, s3: Any, evaluated: Mapping[str, Any], now: datetime,
                retrain: RetrainSettings | None = None) -> dict[str, Any]:
    """Move the pointer of every market to promote (conditionally), keep the others; record every decision.

    S3 failing on one market's move (ClientError, BotoCoreError: denied, throttled, unreachable) fails that
    market alone (outcome `failed`, reason `promotion_failed`, counted in PromotionFailures) and the others go
    on: raised, it failed the step before the decision record was written, losing the markets already moved
    (the state machine's failure notice then said the champions stay). Any other error is a bug and raises."""
    retrain = retrain or RetrainSettings()
    bucket, prefix, timeframe = settings.required("bucket_name"), settings.model_prefix, settings.timeframe
    run_id = evaluated["run_id"]
    records = []
    for symbol, entry in evaluated["markets"].items():
        outcome, reasons = "kept", list(entry.get("reasons", []))
        serving = entry.get("champion_model_id")
        if entry["verdict"] == "promote":
            try:
                registry.move_pointer(s3, bucket, prefix, symbol, timeframe, entry["challenger_model_id"],
                                      expected_model_id=entry.get("champion_model_id"),
                                      reason=f"retraining {run_id}", moved_at=iso_utc(now))
                outcome, serving = "promoted", entry["challenger_model_id"]
                reasons.append("challenger not worse on log loss and Brier within tolerance; evidence passes")
            except registry.PointerConflictError as exc:
                reasons.append(f"superseded: {exc} (an overlapping retraining or an operator moved it first)")
            except (ModelError, ValueError) as exc:
                reasons.append(f"challenger_unloadable: {exc}")
            except (ClientError, BotoCoreError) as exc:
                outcome, serving, read_back = _after_failed_move(s3, bucket, prefix, symbol, timeframe, entry)
                error = f"{_error_name(exc)}: {exc}"
                if outcome == "promoted":  # S3 wrote the pointer, then its reply failed
                    reasons.append(f"challenger not worse on log loss and Brier within tolerance; evidence passes; "
                                   f"S3's reply to the move failed ({error}) but {read_back}; the stamp was not "
                                   f"rewritten, so serving registries find the move at their backstop re-read")
                else:
                    reasons.append(f"promotion_failed: {error}; {read_back}; the next retraining tries again")
                logger.error(f"model promotion failed for {symbol}: {error}" if outcome == "failed" else
                             f"model pointer moved for {symbol} though S3's reply failed ({error}): the stamp was "
                             f"not rewritten", extra={
                                 "reason": "promotion_failed" if outcome == "failed" else "stamp_not_bumped",
                                 "symbol": symbol, "run_id": run_id, "error": error, "outcome": outcome,
                                 "serving_model_id": serving})
        records.append({
            "run_id": run_id, "decided_at": iso_utc(now), "symbol": symbol, "timeframe": timeframe,
            "outcome": outcome, "reasons": reasons, "serving_model_id": serving,
            "champion_model_id": entry.get("champion_model_id"),
            "challenger_model_id": entry.get("challenger_model_id"),
            "champion_log_loss": entry.get("champion", {}).get("log_loss"),
            "champion_brier": entry.get("champion", {}).get("brier"),
            "champion_reference": entry.get("champion", {}).get("reference"),
            "challenger_log_loss": entry.get("challenger", {}).get("log_loss"),
            "challenger_brier": entry.get("challenger", {}).get("brier"),
            "log_loss_tolerance": entry.get("log_loss", {}).get("tolerance"),
            "brier_tolerance": entry.get("brier", {}).get("tolerance"),
            "rows": entry.get("rows", 0), "eval_from": entry.get("eval_from"), "eval_to": entry.get("eval_to"),
            "evidence": entry.get("evidence"), "train_from": evaluated.get("train_from"),
            "train_until": evaluated.get("train_until"),
            "champion_expires_at": None if outcome == "promoted" else entry.get("champion_expires_at"),
        })
    key = f"{RETRAINING_PREFIX}/dt={now.astimezone(UTC).strftime('%Y-%m-%d')}/{run_id}.json"
    body = "".join(_line(record) for record in records).encode()
    s3.put_object(Bucket=settings.bucket_name, Key=key, Body=body, ContentType="application/x-ndjson")
    promoted = [r["symbol"] for r in records if r["outcome"] == "promoted"]
    failed = [r["symbol"] for r in records if r["outcome"] == "failed"]
    metrics.add_metric(name="ModelsPromoted", unit=MetricUnit.Count, value=len(promoted))
    metrics.add_metric(name="PromotionFailures", unit=MetricUnit.Count, value=len(failed))  # 0 when healthy
    logger.info("retraining decided", extra={"run_id": run_id, "promoted": promoted, "failed": failed, "key": key})
    subject = f"TraderAI retraining {run_id}: {len(promoted)} of {len(records)} promoted"
    return {"run_id": run_id, "key": key, "promoted": promoted, "records": records,
            "subject": (subject + (f", {len(failed)} failed" if failed else ""))[:100],
            "message": notification_text(records, key)}


def _error_name(exc: Exception) -> str:
    """`AccessDenied` (S3's error code) for a ClientError, else the exception's class (EndpointConnectionError)."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code") or type(exc).__name__)
    return type(exc).__name__


def _after_failed_move(s3: Any, bucket: str, prefix: str, symbol: str, timeframe: str,
                       entry: Mapping[str, Any]) -> tuple[str, str | None, str]:
    """(outcome, serving model id, what the pointer read back says) after S3 failed a market's move: the
    pointer is read back, since a write whose reply was lost may have landed. `promoted` if it names the
    challenger; else `failed`, serving what it names, or None if it cannot be read either."""
    try:
        pointer, _ = registry.read_pointer(s3, bucket, prefix, symbol, timeframe)
    except (ClientError, BotoCoreError, ModelError, ValueError) as exc:
        return "failed", None, (f"the pointer could not be read back ({_error_name(exc)}: {exc}), so which model "
                                f"serves is unknown")
    serving = pointer["model_id"] if pointer else None
    if serving is not None and serving == entry.get("challenger_model_id"):
        return "promoted", serving, f"the pointer names the challenger {serving}"
    return "failed", serving, f"the pointer still names {serving}" if serving else "the market has no pointer"


def _line(record: Mapping[str, Any]) -> str:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), allow_nan=False) + "\n"


def notification_text(records: Sequence[Mapping[str, Any]], key: str) -> str:
    """One line per market: the outcome, both models' figures and the reasons (the SNS message)."""
    lines = []
    for r in records:
        figures = ""
        if r.get("challenger_log_loss") is not None:
            figures = (f" log loss {r['challenger_log_loss']:.5f} vs {r['champion_log_loss']:.5f}, Brier "
                       f"{r['challenger_brier']:.5f} vs {r['champion_brier']:.5f} on {r['rows']} unseen rows;")
        lines.append(f"{r['symbol']} {r['timeframe']}: {r['outcome'].upper()} (serving {r['serving_model_id']});"
                     f"{figures} {'; '.join(r['reasons'])}")
    return "\n".join([*lines, f"decision record: {key}"])


# ---------------------------------------------------------------- champion expiry

def days_to_expiry(settings: Settings, s3: Any, now: datetime) -> dict[str, float | None]:
    """Days until each market's champion expires (None: no champion, it does not load, or S3 failed to read it:
    logged with reason `expiry_unknown`, never failing the caller, whose own work is done by then: Promote's
    pointers have moved and its record is written, Archive's candles are stored)."""
    out: dict[str, float | None] = {}
    for symbol in settings.markets:
        try:
            pointer, _ = registry.read_pointer(s3, settings.required("bucket_name"), settings.model_prefix, symbol,
                                               settings.timeframe)
            model = registry.load_model_id(s3, settings.required("bucket_name"), settings.model_prefix, symbol,
                                           settings.timeframe, pointer["model_id"]) if pointer else None
        except (ModelError, ValueError):
            model = None
        except (ClientError, BotoCoreError) as exc:
            logger.warning("champion expiry unknown", extra={
                "reason": "expiry_unknown", "symbol": symbol, "error": f"{_error_name(exc)}: {exc}"})
            model = None
        out[symbol] = round((model.expires_at - now).total_seconds() / 86400, 3) if model else None
    return out


def emit_expiry_metric(expiry: Mapping[str, float | None], warning_days: float) -> float | None:
    """ChampionDaysToExpiry = the soonest champion's days left (the alarm fires below EXPIRY_WARNING_DAYS)."""
    known = [v for v in expiry.values() if v is not None]
    soonest = min(known) if known else None
    if soonest is not None:
        metrics.add_metric(name="ChampionDaysToExpiry", unit=MetricUnit.Count, value=soonest)
        if soonest < warning_days:
            logger.warning("champion model expires soon", extra={
                "reason": "model_expiring", "days_to_expiry": expiry, "warning_days": warning_days})
    return soonest


def when(now: datetime | None = None) -> datetime:
    return (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)



def run_time(event: Mapping[str, Any]) -> datetime:
    """The run's clock: the event's `now` (set by the train step) or `time` (the schedule's mark)."""
    text = event.get("now") or event.get("time") if isinstance(event, Mapping) else None
    if not text:
        raise EventError("expected {\"time\": ISO-8601 UTC} (the schedule's mark) or a previous step's output")
    try:
        return parse_iso_utc(str(text), "time").replace(microsecond=0)
    except ContractError as exc:
        raise EventError(str(exc)) from exc

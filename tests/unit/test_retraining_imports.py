"""The archive, evaluate and promote steps run on the predict layer (numpy + ccxt): never scikit-learn, scipy,
pandas or pyarrow. Only TrainFunction carries the training layer (pinned in test_least_privilege)."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = """
import sys

class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('sklearn', 'scipy', 'pandas', 'pyarrow'):
            raise ImportError('not in the predict layer: ' + name)

sys.meta_path.insert(0, Block())
from traderai.testing.handlers import load_handler
assert callable(load_handler(sys.argv[1]).handler)
# what the evaluate step computes: features and labels of the models' own kind, scored with numpy
from traderai.market.csv import bundled_candles_path, load_candles_csv
from traderai.train import build_dataset
from traderai.services.retraining import brier_rows, log_loss_rows, not_worse
candles = load_candles_csv(bundled_candles_path('BTC/USDT'), 'BTC/USDT').tail(1500)
data = build_dataset([candles], 4, 'direction')
p = data.labels * 0 + 0.5
same = not_worse(log_loss_rows(data.labels, p), log_loss_rows(data.labels, p), 4, 2.0)
assert same['passes'] and same['difference'] == 0 and brier_rows(data.labels, p).mean() == 0.25
print('ok')
"""


@pytest.mark.parametrize("function", ["archive", "evaluate", "promote"])
def test_the_light_steps_never_import_the_training_stack(function: str) -> None:
    env = {"PATH": "/usr/bin:/bin", "POWERTOOLS_TRACE_DISABLED": "1", "AWS_DEFAULT_REGION": "us-east-1"}
    result = subprocess.run([sys.executable, "-c", PROBE, function], capture_output=True, text=True, env=env,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("ok")

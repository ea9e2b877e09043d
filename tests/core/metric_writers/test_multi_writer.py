"""The fan-out writer: every writer gets every call and is closed."""

from __future__ import annotations

import pytest

from metaplastic.core.metric_writers import MetricWriter, MultiWriter


class Recorder(MetricWriter):
    def __init__(self, fail_close=False):
        self.calls, self.fail_close = [], fail_close

    def write_scalars(self, step, scalars):
        self.calls.append(("scalars", step, dict(scalars)))

    def write_hparams(self, hparams):
        self.calls.append(("hparams", dict(hparams)))

    def flush(self):
        self.calls.append(("flush",))

    def close(self):
        self.calls.append(("close",))
        if self.fail_close:
            raise RuntimeError("close failed")


def test_multi_writer_fans_out_and_closes_every_writer():
    first, second = Recorder(fail_close=True), Recorder()
    writer = MultiWriter([first, second])
    writer.write(3, {"a": 1.0})
    writer.write_hparams({"lr": 0.1})
    writer.flush()
    with pytest.raises(RuntimeError, match="close failed"):
        writer.close()
    expected = [("scalars", 3, {"a": 1.0}), ("hparams", {"lr": 0.1}), ("flush",), ("close",)]
    assert first.calls == expected and second.calls == expected

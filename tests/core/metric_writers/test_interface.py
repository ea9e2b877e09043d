"""`MetricWriter` is abstract: a writer must implement it."""

from __future__ import annotations

import pytest

from metaplastic.core.metric_writers import MetricWriter


def test_metric_writer_is_abstract():
    with pytest.raises(TypeError):
        MetricWriter()

    class OnlyScalars(MetricWriter):
        def write_scalars(self, step, scalars):
            pass

    with pytest.raises(TypeError):
        OnlyScalars()

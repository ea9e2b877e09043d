"""The meta-training curve picture: drawn as the run goes and at its end; never stops the run."""

from __future__ import annotations

from metaplastic.core import metric_writers
from metaplastic.core.metric_writers import CurvePicture, create_default_writer


def test_curve_picture_is_drawn_as_the_run_goes_and_at_its_end(tmp_path, monkeypatch):
    """Redrawn once `every` seconds have passed since the last drawing, and at close: the picture
    shows every logged θ-step so far (read back from metrics.csv)."""
    from PIL import Image

    clock = [100.0]
    monkeypatch.setattr(metric_writers.curve_picture.time, "monotonic", lambda: clock[0])
    picture = tmp_path / metric_writers.CURVE_FILE
    drawn = []
    real_draw = CurvePicture.draw
    monkeypatch.setattr(CurvePicture, "draw", lambda self: (drawn.append(clock[0]), real_draw(self)))
    writer = create_default_writer(tmp_path)
    writer.write_hparams({"update_rule": "simple_local"})
    writer.write(1, {"meta_loss": 1.0})
    clock[0] += metric_writers.CURVE_SECONDS - 1
    writer.write(2, {"meta_loss": 0.9})
    assert not picture.exists() and drawn == []  # not yet a minute
    clock[0] += 1
    writer.write(3, {"meta_loss": 0.8})
    assert drawn == [100.0 + metric_writers.CURVE_SECONDS] and Image.open(picture).size[0] > 400
    first = picture.read_bytes()
    writer.write(4, {"meta_loss": 0.7})
    writer.close()  # the end of the run: drawn with step 4
    assert len(drawn) == 2 and picture.read_bytes() != first


def test_curve_picture_that_cannot_be_written_never_stops_the_run(tmp_path, capsys):
    writer = CurvePicture(tmp_path / "no_such_folder", every=0.0)
    writer.write_scalars(1, {"meta_loss": 1.0})
    writer.write_scalars(2, {"meta_loss": 1.0})
    writer.close()
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "not drawn" in err[0] and "the run goes on" in err[0]

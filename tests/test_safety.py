"""Never lose data or a fit (issue 17): outputs against inputs and each other, special files,
literal names, interruptions, damaged checkpoints, and messages that say what happened.

Every failing case leaves a file at every output path and checks it byte for byte afterwards.
Real files, FIFOs, /dev/null, pipes and signals; no mocks.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
import warnings

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gradfit import FileSource
from gradfit.cli import main
from gradfit.errors import DataError
from gradfit.files_io import atomic_write_text, remove_stale_temporaries, save_or_recover
from gradfit.progress import PipeSafe

from .conftest import make_regression

FAST = ["-q", "--epochs", "30", "--tol", "none"]
ENV = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.dirname(os.path.dirname(os.path.abspath(__file__)))]
                                                  + [p for p in [os.environ.get("PYTHONPATH")] if p]))


def frame(n=40, seed=0):
    X, y = make_regression(n=n, d=2, seed=seed)
    return pd.DataFrame({"a": X[:, 0], "b": X[:, 1], "y": y})


def run(capsys, *argv):
    """``main(argv)`` in this process with NumPy warnings as errors: (code, stdout, stderr)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def snapshot(*paths):
    """The bytes of every file under ``paths`` (folders walked), to compare after a failure."""
    found = {}
    for path in map(str, paths):
        if os.path.isdir(path):
            for root, _, names in os.walk(path):
                for name in names:
                    found[os.path.join(root, name)] = open(os.path.join(root, name), "rb").read()
        elif os.path.lexists(path):
            found[path] = open(path, "rb").read()
    return found


def one_error_line(err):
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gradfit: error: "), err
    assert "Traceback" not in err and "Warning" not in err
    return lines[0]


# -- 1. no output lands on an input or another output ---------------------------------------------


def _layout(tmp_path):
    data = frame()
    folder = tmp_path / "parts"
    folder.mkdir()
    data.iloc[:20].to_parquet(folder / "p1.parquet", index=False)
    data.iloc[20:].to_parquet(folder / "p2.parquet", index=False)
    data.to_csv(tmp_path / "d.csv", index=False)
    for name in ("m.json", "r.html", "c.json", "other.json"):
        (tmp_path / name).write_text(f"old {name}\n")
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "cost.png").write_bytes(b"old picture")
    os.link(folder / "p1.parquet", tmp_path / "hard.json")
    os.symlink(tmp_path / "d.csv", tmp_path / "link.json")
    return tmp_path


CLASHES = {
    "-o inside a DATA folder": ("train parts --target y -o parts/p1.parquet", ["-o", "parts/p1.parquet"]),
    "--report matched by a DATA glob": ("train parts/*.parquet --target y --report parts/p2.parquet",
                                        ["--report", "p2.parquet"]),
    "new Parquet file in a DATA folder": ("train parts --target y -o parts/p3.parquet", ["-o", "read as data"]),
    "-o and --report the same": ("train d.csv --target y -o m.json --report m.json", ["--report", "-o", "same file"]),
    "-o a plot of --plot": ("train d.csv --target y -o plots/cost.png --plot plots", ["--plot", "-o"]),
    "--checkpoint on the data": ("train d.csv --target y --checkpoint d.csv", ["--checkpoint", "'d.csv'", "DATA"]),
    "--report on the data": ("train d.csv --target y --report d.csv", ["--report", "DATA"]),
    "-o a hard link of a data file": ("train parts --target y -o hard.json", ["-o", "hard.json", "p1.parquet"]),
    "-o a symlink to the data": ("train d.csv --target y -o link.json", ["-o", "link.json", "d.csv"]),
    "-o on --resume": ("train d.csv --target y -o c.json --resume c.json", ["-o", "--resume"]),
    "--checkpoint and --report the same": ("train d.csv --target y --checkpoint r.html --report r.html",
                                           ["--report", "--checkpoint"]),
    "predict -o on the model": ("predict m.json d.csv -o m.json", ["-o", "MODEL"]),
    "predict -o on the data": ("predict m.json d.csv -o d.csv", ["-o", "DATA"]),
}


@pytest.mark.parametrize("case", sorted(CLASHES))
def test_an_output_on_an_input_or_another_output_is_refused_before_any_work(capsys, tmp_path, case, monkeypatch):
    command, words = CLASHES[case]
    root = _layout(tmp_path)
    monkeypatch.chdir(root)
    before = snapshot(root)
    code, out, err = run(capsys, *command.split())
    line = one_error_line(err)
    assert code == 1
    for word in words:
        assert word in line, line
    assert snapshot(root) == before, "a refused command changed a file"


def test_checkpointing_over_the_file_resumed_is_the_documented_exception(capsys, tmp_path, monkeypatch):
    root = _layout(tmp_path)
    monkeypatch.chdir(root)
    (root / "c.json").unlink()
    assert run(capsys, "train", "d.csv", "--target", "y", *FAST, "--checkpoint", "c.json")[0] == 0
    code, _, err = run(capsys, "train", "d.csv", "--target", "y", "-q", "--epochs", "60", "--tol", "none",
                       "--checkpoint", "c.json", "--resume", "c.json")
    assert code == 0, err
    assert len(json.loads((root / "c.json").read_text())["loss_curve"]) == 60


OUTPUT_CHOICES = ["d.csv", "m.json", "r.html", "c.json", "other.json", "plots/cost.png", "link.json", "hard.json",
                  "parts/p1.parquet", None]


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(output=st.sampled_from(OUTPUT_CHOICES), report=st.sampled_from(OUTPUT_CHOICES),
       checkpoint=st.sampled_from(OUTPUT_CHOICES), plot=st.booleans(),
       data=st.sampled_from(["d.csv", "parts"]))
def test_any_combination_of_output_paths(capsys, tmp_path_factory, output, report, checkpoint, plot, data):
    """Whatever the paths: either every output is distinct from every input and each other and the
    run succeeds, or it is refused with one line and no file changes."""
    root = _layout(tmp_path_factory.mktemp("combo"))
    cwd = os.getcwd()
    os.chdir(root)
    try:
        argv = ["train", data, "--target", "y", *FAST]
        outputs = {}
        for flag, path in (("-o", output), ("--report", report), ("--checkpoint", checkpoint)):
            if path is not None:
                argv += [flag, path]
                outputs[flag] = path
        plots = []
        if plot:
            argv += ["--plot", "plots"]
            plots = ["plots/cost.png", "plots/predicted.png", "plots/residuals.png"]
        inputs = ["d.csv"] if data == "d.csv" else ["parts/p1.parquet", "parts/p2.parquet"]
        written = list(outputs.values()) + plots
        real = [os.stat(p) if os.path.exists(p) else os.path.realpath(p) for p in written]
        keys = [(s.st_dev, s.st_ino) if isinstance(s, os.stat_result) else s for s in real]
        input_keys = {(os.stat(p).st_dev, os.stat(p).st_ino) for p in inputs}
        clash = len(set(keys)) < len(keys) or any(k in input_keys for k in keys)
        before = snapshot(root)
        code, out, err = run(capsys, *argv)
        if clash:
            assert code == 1
            one_error_line(err)
            assert snapshot(root) == before
        else:
            assert code == 0, err
            for path in inputs:
                assert open(path, "rb").read() == before[os.path.join(str(root), path)]
    finally:
        os.chdir(cwd)


# -- 2. special files are written through -----------------------------------------------------------


def test_dev_null_stays_a_character_device(capsys, tmp_path):
    data = tmp_path / "d.csv"
    frame().to_csv(data, index=False)
    code, _, err = run(capsys, "train", data, "--target", "y", *FAST, "-o", "/dev/null", "--report", "/dev/null")
    assert code == 0, err
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    code, _, err = run(capsys, "predict", tmp_path / "missing.json", data, "-o", "/dev/null")
    assert code == 1 and stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_a_fifo_receives_the_model_as_a_stream(capsys, tmp_path):
    data = tmp_path / "d.csv"
    frame().to_csv(data, index=False)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(open(fifo, "rb").read()))
    reader.start()
    code, _, err = run(capsys, "train", data, "--target", "y", *FAST, "-o", fifo)
    reader.join(timeout=60)
    assert code == 0, err
    assert stat.S_ISFIFO(os.stat(fifo).st_mode), "the FIFO was replaced"
    assert json.loads(received[0])["format"] == "gradfit-model"
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".gradfit-")]


def test_a_symlink_is_followed_and_its_target_replaced(capsys, tmp_path):
    data = tmp_path / "d.csv"
    frame().to_csv(data, index=False)
    (tmp_path / "store").mkdir()
    target = tmp_path / "store" / "model.json"
    target.write_text("old")
    link = tmp_path / "model.json"
    os.symlink(target, link)
    code, _, err = run(capsys, "train", data, "--target", "y", *FAST, "-o", link)
    assert code == 0, err
    assert os.path.islink(link) and os.readlink(link) == str(target)
    assert json.loads(target.read_text())["format"] == "gradfit-model"


def test_dev_stdout_keeps_the_shells_redirection(capsys, tmp_path):
    data = tmp_path / "d.csv"
    frame().to_csv(data, index=False)
    model = tmp_path / "m.json"
    assert run(capsys, "train", data, "--target", "y", *FAST, "-o", model)[0] == 0
    out = tmp_path / "predictions.csv"
    with open(out, "w") as handle:
        handle.write("kept line\n")
        handle.flush()
    with open(out, "a") as handle:
        done = subprocess.run([sys.executable, "-m", "gradfit", "predict", str(model), str(data), "-o", "/dev/stdout"],
                              stdout=handle, stderr=subprocess.PIPE, env=ENV, text=True)
    assert done.returncode == 0, done.stderr
    lines = out.read_text().splitlines()
    assert lines[0] == "kept line" and lines[1] == "y" and len(lines) == 2 + 40


# -- 3. literal paths first -------------------------------------------------------------------------


def test_a_name_with_brackets_that_exists_is_that_file(capsys, tmp_path):
    frame(n=40).to_parquet(tmp_path / "data[1].parquet", index=False)
    frame(n=10, seed=1).to_parquet(tmp_path / "data1.parquet", index=False)
    code, out, err = run(capsys, "train", tmp_path / "data[1].parquet", "--target", "y", *FAST)
    assert code == 0, err
    assert "trained on 40 rows" in out
    # and a pattern that names no file is still a glob
    code, out, err = run(capsys, "train", tmp_path / "data[1]*.parquet", "--target", "y", *FAST)
    assert code == 0 and "trained on 10 rows" in out


# -- 4. a finished fit is always written ----------------------------------------------------------


def test_a_broken_pipe_stops_the_progress_not_the_training(tmp_path):
    data = tmp_path / "d.csv"
    frame().to_csv(data, index=False)
    model, report = tmp_path / "m.json", tmp_path / "r.html"
    process = subprocess.Popen(
        [sys.executable, "-m", "gradfit", "train", str(data), "--target", "y", "--epochs", "400", "--tol", "none",
         "--lr", "0.001", "-o", str(model), "--report", str(report)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=ENV,
    )
    first = [process.stdout.readline() for _ in range(2)]  # as `| head -2`
    process.stdout.close()
    assert process.wait(timeout=300) == 0
    assert all(line.startswith(b"Epoch: ") for line in first)
    assert json.loads(model.read_text())["training"]["n_iter"] == 400
    assert report.read_text().startswith("<!DOCTYPE html>") or "<html" in report.read_text()


def test_a_vanished_folder_sends_the_model_to_a_recovery_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    gone = tmp_path / "gone" / "model.json"
    with pytest.raises(OSError) as caught:
        save_or_recover(lambda path: atomic_write_text(path, "the model"), gone)
    message = str(caught.value)
    assert "gone" in message and "gradfit-recovered-model.json" in message
    assert (tmp_path / "gradfit-recovered-model.json").read_text() == "the model"
    assert ".gradfit-" not in message, "the error names a temporary file"


def test_stale_temporary_files_of_dead_processes_are_removed(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".gradfit-{dead.pid}-0123456789ab.tmp"
    live = tmp_path / f".gradfit-{os.getpid()}-0123456789ab.tmp"
    foreign = tmp_path / ".gradfit-notours.tmp"
    for path in (stale, live, foreign):
        path.write_text("x")
    atomic_write_text(tmp_path / "out.json", "{}")
    assert not stale.exists() and live.exists() and foreign.exists()
    assert remove_stale_temporaries(tmp_path) == []


def test_a_killed_write_leaves_a_temporary_file_the_next_run_removes(tmp_path):
    code = ("import os, sys; from gradfit.files_io import atomic_writer\n"
            "with atomic_writer(sys.argv[1]) as h:\n    h.write('half'); h.flush(); os.kill(os.getpid(), 9)\n")
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "m.json")], env=ENV)
    assert [n for n in os.listdir(tmp_path) if n.startswith(".gradfit-")]
    atomic_write_text(tmp_path / "m.json", "{}")
    assert sorted(os.listdir(tmp_path)) == ["m.json"]


# -- 5. never a traceback, never a NumPy warning line ------------------------------------------------


# What the ``gradfit`` script runs (entry point gradfit.__main__:run), saying when Python's own
# start-up and gradfit's two-line package init are done: from there on every moment is gradfit's.
SIGINT_SCRIPT = (
    "import sys\nfrom gradfit.__main__ import run\nsys.stdout.write('ready\\n'); sys.stdout.flush()\n"
    "sys.exit(run())\n"
)


@pytest.mark.parametrize("delay", [0.0, 0.3, 1.0, 3.0])
def test_ctrl_c_at_any_moment_ends_in_one_line_and_130(tmp_path, delay):
    """A real SIGINT, from the first heavy import on (NumPy, scikit-learn, …) through training."""
    data = tmp_path / "d.csv"
    frame().to_csv(data, index=False)
    model = tmp_path / "m.json"
    model.write_text("old model")
    process = subprocess.Popen(
        [sys.executable, "-c", SIGINT_SCRIPT, "train", str(data), "--target", "y", "-q", "--epochs", "200000",
         "--tol", "none", "--lr", "0.0001", "--engine", "pass", "-o", str(model)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV,
    )
    assert process.stdout.readline() == b"ready\n"
    time.sleep(delay)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=300)
    lines = err.decode().strip().splitlines()
    assert process.returncode in (130, -signal.SIGINT), err  # -2: died of SIGINT, which the shell shows as 130
    assert "Traceback" not in err.decode() and "Exception ignored" not in err.decode(), err
    assert lines and all(line.startswith("gradfit:") for line in lines), err
    text = model.read_text()
    assert text == "old model" or json.loads(text)["training"]["stop_reason"] == "interrupted"


def _checkpoint(tmp_path, capsys, *extra):
    data = tmp_path / "d.csv"
    frame().to_csv(data, index=False)
    argv = ["train", data, "--target", "y", "-q", "--epochs", "6", "--tol", "none", *extra]
    assert run(capsys, *argv, "--checkpoint", tmp_path / "c.json")[0] == 0
    return argv, json.loads((tmp_path / "c.json").read_text())


NAN_ARRAY = {"dtype": "<f8", "shape": [3, 1], "base64": "AAAAAAAA+H8AAAAAAAD4fwAAAAAAAPh/"}


@pytest.mark.parametrize("field, value, words", [
    ("learning_rate", None, ["damaged", "learning_rate"]),
    ("learning_rate", [0.1], ["damaged", "learning_rate"]),
    ("learning_rate", 1e308, ["learning_rate"]),
    ("params", NAN_ARRAY, ["damaged", "NaN"]),
    ("loss_curve", [1.0] * 50, ["damaged", "50 epochs", "6"]),
    ("opt_state", {"tuple": [10**6]}, ["damaged", "counter"]),
    ("opt_state", {"tuple": [NAN_ARRAY]}, ["damaged", "opt_state"]),
    ("fingerprint", "x", ["damaged", "fingerprint"]),
])
def test_damaged_checkpoint_fields_are_called_damaged(capsys, tmp_path, field, value, words):
    argv, document = _checkpoint(tmp_path, capsys)
    document[field] = value
    resume = tmp_path / "r.json"
    resume.write_text(json.dumps(document))
    model = tmp_path / "m.json"
    model.write_text("old model")
    code, _, err = run(capsys, *argv, "--resume", resume, "-o", model)
    line = one_error_line(err)
    assert code == 1
    for word in words:
        assert word in line, line
    assert model.read_text() == "old model"


def test_a_generator_state_out_of_range_is_refused(capsys, tmp_path):
    argv, document = _checkpoint(tmp_path, capsys, "--batch-size", "10")
    for key, value in (("uinteger", 2**100), ("has_uint32", 7)):
        damaged = json.loads(json.dumps(document))
        damaged["rng"][key] = value
        (tmp_path / "r.json").write_text(json.dumps(damaged))
        code, _, err = run(capsys, *argv, "--resume", tmp_path / "r.json")
        assert code == 1 and "rng" in one_error_line(err)


JSON_LEAVES = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2**130, max_value=2**130),
                        st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=5),
                        st.just([1.0]), st.just({}), st.just(NAN_ARRAY), st.just({"tuple": []}))


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, prefix + (key,))
    elif isinstance(node, list) and len(node) < 8:
        for index, value in enumerate(node):
            yield from _paths(value, prefix + (index,))


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("ck")
    data = root / "d.csv"
    frame().to_csv(data, index=False)
    made = {}
    for name, extra in (("adam-minibatch", ["--optimizer", "adam", "--batch-size", "10"]),
                        ("momentum", ["--optimizer", "momentum"]), ("cg", ["--optimizer", "cg"])):
        argv = ["train", str(data), "--target", "y", "-q", "--epochs", "6", "--tol", "none", *extra]
        assert main(argv + ["--checkpoint", str(root / f"{name}.json")]) == 0
        made[name] = (argv, json.loads((root / f"{name}.json").read_text()))
    return root, made


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_checkpoint_field_any_value(checkpoints, capsys, data):
    """Resuming a checkpoint with any field replaced: a fit, or one line; no traceback, no warning."""
    root, made = checkpoints
    name = data.draw(st.sampled_from(sorted(made)), label="checkpoint")
    argv, document = made[name]
    path = data.draw(st.sampled_from(sorted(set(_paths(document)) - {()}, key=str)), label="field")
    value = data.draw(JSON_LEAVES, label="value")
    damaged = json.loads(json.dumps(document))
    node = damaged
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    resume = root / "resume.json"
    resume.write_text(json.dumps(damaged))
    capsys.readouterr()
    code, _, err = run(capsys, *argv, "--resume", resume)
    assert code in (0, 1), err
    if code == 1:
        assert "checkpoint" in one_error_line(err) or "diverged" in err


def test_a_huge_learning_rate_is_divergence_not_numpy_warnings(capsys, tmp_path):
    frame().to_csv(tmp_path / "d.csv", index=False)
    code, _, err = run(capsys, "train", tmp_path / "d.csv", "--target", "y", "-q", "--lr", "1e308")
    assert code == 1 and "diverged at epoch 0" in one_error_line(err)


def test_evaluate_names_the_row_where_the_error_overflows(capsys, tmp_path):
    frame().to_csv(tmp_path / "d.csv", index=False)
    assert run(capsys, "train", tmp_path / "d.csv", "--target", "y", *FAST, "-o", tmp_path / "m.json")[0] == 0
    (tmp_path / "big.csv").write_text("a,b,y\n1,2,3\n1e307,2,3\n")
    code, _, err = run(capsys, "evaluate", tmp_path / "m.json", tmp_path / "big.csv")
    assert code == 1 and "line 3" in one_error_line(err) and "overflows" in err


def test_a_file_changed_under_a_running_fit_is_refused(tmp_path):
    path = tmp_path / "d.csv"
    frame().to_csv(path, index=False)
    # keep_columns=False: every pass reads the file (kept columns, in memory or in the binary
    # cache, are a snapshot of the first pass, which no later change can reach)
    source = FileSource(path, "y", keep_columns=False)
    assert sum(chunk.n_rows for chunk in source.chunks()) == 40
    with open(path, "a") as handle:  # a CSV that grows during training
        handle.write("1,2,3\n")
    with pytest.raises(DataError, match="grew from"):
        list(source.chunks())
    frame().drop(columns="b").to_csv(tmp_path / "other.csv", index=False)
    os.replace(tmp_path / "other.csv", path)  # replaced by one missing a column
    with pytest.raises(DataError, match="replaced"):
        list(source.chunks())


# -- 6. messages that say what happened ---------------------------------------------------------------


@pytest.mark.parametrize("name, content, words", [
    ("vt.csv", b"a,b,y\n1,2,3\n2,\x0b3,4\n3,4,5\n", ["line 3", "column 'b'"]),
    ("nbsp.csv", "a,b,y\n1,2,3\n2,\u00a03,4\n3,4,5\n".encode(), ["line 3", "column 'b'"]),
    ("quoted.csv", b'a,b,y\n1,2,3\n2,"3\n",4\n3,4,5\n', ["line 3", "column 'b'"]),
    ("zipped.csv", gzip.compress(b"a,b,y\n1,2,3\n2,3,4\n", mtime=0), ["gzip-compressed", ".csv.gz"]),
    # a field longer than the largest block pyarrow is given (32 MiB)
    ("huge-field.csv", b"a,b,y\n1,2,3\n2," + b"9" * (40 << 20) + b",4\n", ["line 3", "column 'b'", "field of 41943040"]),
], ids=["vt", "nbsp", "quoted", "gzip", "huge-field"])  # ids by name: gzip's bytes carry the time (xdist compares ids)
def test_csv_messages_name_what_happened(capsys, tmp_path, name, content, words):
    (tmp_path / name).write_bytes(content)
    code, _, err = run(capsys, "train", tmp_path / name, "--target", "y", "--features", "a,b", "-q")
    line = one_error_line(err)
    assert code == 1
    for word in words:
        assert word in line, line


def test_a_header_over_one_megabyte_is_read(capsys, tmp_path):
    names = [f"column_{i:06d}_" + "x" * 200 for i in range(6000)]  # about 1.3 MB of header
    rows = np.random.default_rng(0).normal(size=(5, 3))
    text = ",".join(names[:-2] + ["a", "y"]) + "\n" + "".join(
        ",".join(["0"] * (len(names) - 2) + [f"{r[0]}", f"{2 * r[0] + 1}"]) + "\n" for r in rows)
    (tmp_path / "wide.csv").write_text(text)
    assert len(text.splitlines()[0]) > 1 << 20
    source = FileSource(tmp_path / "wide.csv", "y", features=["a"])
    assert sum(chunk.n_rows for chunk in source.chunks()) == 5


def test_uint64_beyond_2_53_is_refused_not_collapsed(capsys, tmp_path):
    table = pa.table({"a": pa.array([2**63 + 1, 2**63 + 2, 2**63 + 5], pa.uint64()), "y": [1.0, 2.0, 3.0]})
    pq.write_table(table, tmp_path / "u.parquet")
    code, _, err = run(capsys, "train", tmp_path / "u.parquet", "--target", "y", "-q")
    line = one_error_line(err)
    assert code == 1 and "2**53" in line and "column 'a'" in line and "row 1" in line


def test_engine_auto_estimates_a_csvs_rows(tmp_path):
    from gradfit.engines import choose_engine
    from gradfit.registry import LOSSES

    d = 3000
    X = np.random.default_rng(0).normal(size=(20, d)).round(3)
    frame_ = pd.DataFrame(X, columns=[f"x{i}" for i in range(d)])
    frame_["y"] = X[:, 0]
    frame_.to_csv(tmp_path / "wide.csv", index=False)
    source = FileSource(tmp_path / "wide.csv", "y")
    assert 10 <= source.estimated_samples <= 40
    loss = LOSSES["squared_error"](None)
    assert choose_engine("auto", loss, None, d, 1000, n_samples=source.estimated_samples) == "pass"


def test_column_names_are_drawn_literally(capsys, tmp_path):
    pd.DataFrame({"$x_1$": [1.0, 2, 3, 4, 5], "$": [2.0, 1, 5, 4, 3], "y": [1.0, 3, 2, 5, 4]}).to_csv(
        tmp_path / "m.csv", index=False)
    code, _, err = run(capsys, "train", tmp_path / "m.csv", "--target", "y", *FAST, "--plot", tmp_path / "plots",
                       "--report", tmp_path / "r.html")
    assert code == 0, err
    assert sorted(os.listdir(tmp_path / "plots")) == ["cost.png", "predicted.png", "residuals.png"]


def test_control_characters_are_escaped_on_a_terminal_only():
    class Terminal:
        def __init__(self):
            self.text = ""

        def write(self, text):
            self.text += text

        def flush(self):
            pass

    screen = Terminal()
    PipeSafe(screen, escape=True).write("a\x1b[2Jb\tc\n")
    assert screen.text == "a\\x1b[2Jb\tc\n"
    file = Terminal()
    PipeSafe(file, escape=False).write("a\x1b[2Jb\n")
    assert file.text == "a\x1b[2Jb\n"

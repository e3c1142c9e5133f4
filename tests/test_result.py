"""One record per fit (gradfit.result): every surface shows its stop reason and message verbatim.

For a table of fits that end each way (certified, epochs ran out, stalled,
interrupted by a callback, cg with its refinement, a robust loss, partial_fit,
and a fit that diverges and so has no record), the estimator's attributes,
``fit_report_``, the ConvergenceWarning, the saved model file's training
section, ``gradfit train``'s summary and warning and ``gradfit inspect`` all
carry the same words; and no module other than gradfit/result.py writes them.
Each stop reason is also checked against what the fit did (epochs run, the
certificate's value against tol, the callback's epoch), not against the record.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

import gradfit
from gradfit import GDRegressor
from gradfit.cli import _flag_advice, main
from gradfit.errors import DivergenceError
from gradfit.estimator import load
from gradfit.result import FitResult, Refinement, divergence_message, stop_message

PACKAGE = Path(gradfit.__file__).parent


def data(seed=3, n=200):
    """Three features of spreads 1, 10 and 100 and heavy-tailed noise: condition ~1e4 raw."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3)) * [1.0, 10.0, 100.0]
    y = X @ [1.0, 0.2, 0.03] + 0.5 + rng.standard_t(3, size=n)
    return X, y


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    X, y = data()
    path = tmp_path_factory.mktemp("result") / "data.csv"
    np.savetxt(path, np.column_stack([X, y]), delimiter=",", header="a,b,c,y", comments="", fmt="%.17g")
    return X, y, path


def fitted(settings, X, y, **fit_options):
    """``(model, ConvergenceWarning texts)``."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = GDRegressor(**settings).fit(X, y, **fit_options)
    return model, [str(w.message) for w in caught if issubclass(w.category, ConvergenceWarning)]


def inspected(path, capsys):
    capsys.readouterr()
    assert main(["inspect", str(path)]) == 0
    return capsys.readouterr().out


def shows_stopped(out, message):
    """The diagnostics' "stopped:" row (padded to the widest label) holds exactly ``message``."""
    return re.search(r"^  stopped: +" + re.escape(message) + "$", out, re.MULTILINE) is not None


def check_surfaces(model, warned, tmp_path, capsys, warns=True):
    """The record, the attributes, fit_report_, the warning, the model file and inspect say the same.

    ``warns=False``: ``partial_fit``, which never warns (one epoch on one batch proves nothing).
    """
    record = model._fit_result
    assert isinstance(record, FitResult)
    message, reason = record.message, record.stop_reason
    assert model.stop_message_ == model.fit_report_["message"] == message
    assert model.stop_reason_ == model.fit_report_["stop_reason"] == reason
    assert model.converged_ is record.converged is record.success is model.fit_report_["converged"]
    assert record.converged == (reason == "converged")
    assert model.certificate_ is record.certificate and model.n_iter_ == record.n_iter == len(model.loss_curve_)
    assert (model.engine_, model.optimizer_, model.learning_rate_) == (record.engine, record.optimizer,
                                                                       record.learning_rate)
    assert warned == ([f"GDRegressor {message}"] if record.unsettled and warns else [])
    path = tmp_path / f"{reason}.json"
    model.save(path)
    document = json.loads(path.read_text())
    assert document["training"]["message"] == document["diagnostics"]["message"] == message
    assert document["training"]["stop_reason"] == reason
    assert load(path).stop_message_ == message and load(path).stop_reason_ == reason
    out = inspected(path, capsys)
    assert shows_stopped(out, message) and f"stop reason {reason.replace('_', ' ')})" in out
    return record


def test_the_message_is_built_from_the_fields_it_names():
    # The sentence, from the fields alone (no fit): a certificate that holds is "converged"
    # whatever the stop reason says, and the advice is added only to a fit that ran out or stalled.
    from gradfit.certificate import Certificate

    held, short = Certificate("distance", 1e-8, 1e-6), Certificate("distance", 3e-3, 1e-6)
    assert stop_message("converged", held, 12, 1e-6) == \
        "converged after 12 epochs: certified within tol=1e-06 (distance 1e-08)"
    assert stop_message("max_epochs", short, 5, 1e-6, "use optimizer='cg'") == \
        "not converged: the 5 epochs ran out with the distance 0.003 > tol=1e-06; use optimizer='cg'"
    assert stop_message("stalled", Certificate("none", None, 1e-6, "why"), 7, 1e-6) == \
        "not converged: the cost stalled after 7 epochs and nothing certifies it (why)"
    assert stop_message("interrupted", short, 3, 1e-6, "ignored").startswith(
        "not converged: interrupted after 3 epochs (Ctrl-C or a callback), distance 0.003; ")
    assert "ignored" not in stop_message("interrupted", short, 3, 1e-6, "ignored")
    assert stop_message("max_epochs", short, 9, None, "ignored") == \
        "not converged: ran all 9 epochs with tol=None (no convergence test), distance 0.003"
    with pytest.raises(ValueError, match="stop reason"):
        FitResult(coef=None, intercept=None, loss_curve=[], stop_reason="settled", certificate=held, tol=1e-6,
                  final_cost=0.0, engine="statistics", optimizer="gd", learning_rate=None, params=None)


#: (what, settings, CLI flags, the stop reason, and what the fit did that says so)
FITS = [
    ("certified", {}, [], "converged",
     lambda m: m.certificate_.value <= m.tol and m.n_iter_ < m.epochs),
    ("epochs ran out", {"optimizer": "gd", "epochs": 5}, ["--optimizer", "gd", "--epochs", "5"], "max_epochs",
     lambda m: m.n_iter_ == 5 and m.certificate_.value > m.tol),
    ("stalled", {"loss": "absolute_error", "optimizer": "gd", "epochs": 2000},
     ["--loss", "absolute_error", "--optimizer", "gd", "--epochs", "2000"], "stalled",
     lambda m: m.n_iter_ < 2000 and m.certificate_.value > m.tol),
    ("cg, refined", {"optimizer": "cg"}, ["--optimizer", "cg"], "converged",
     lambda m: m.refinement_["status"] == "settled" and m.certificate_.value <= m.tol),
    ("robust loss", {"loss": "huber"}, ["--loss", "huber"], "converged",
     lambda m: m.optimizer_ == "newton" and m.certificate_.kind == "gradient_bound"
     and m.certificate_.value <= m.tol),
    ("tol=None", {"tol": None, "epochs": 20, "optimizer": "gd"}, ["--tol", "none", "--epochs", "20", "--optimizer", "gd"],
     "max_epochs", lambda m: m.n_iter_ == 20 and not m.converged_),
]


@pytest.mark.parametrize("what, settings, flags, reason, evidence", FITS, ids=[f[0] for f in FITS])
def test_every_surface_shows_the_records_words(what, settings, flags, reason, evidence, table, tmp_path, capsys):
    X, y, csv = table
    model, warned = fitted(settings, X, y)
    record = check_surfaces(model, warned, tmp_path, capsys)
    assert record.stop_reason == reason and evidence(model), (what, record.message)

    # gradfit train on the same numbers: its summary line, its warning (advice as a flag) and its model file
    saved = tmp_path / "cli.json"
    capsys.readouterr()
    assert main(["train", str(csv), "--target", "y", "-q", "-o", str(saved), *flags]) == 0
    out, err = capsys.readouterr()
    training = json.loads(saved.read_text())["training"]
    assert training["stop_reason"] == reason and training["message"] == record.message
    assert record.message in out.splitlines()
    if record.unsettled:
        flag = _flag_advice(*record.advice) if record.advice else None
        assert err == f"gradfit: warning: stopped after {record.n_iter} epochs (--epochs {model.epochs}), " \
                      f"{record.message_with(flag)}\n"
    else:
        assert err == ""
    assert shows_stopped(inspected(saved, capsys), record.message)


class StopAt:
    """A callback that asks to stop at the end of epoch ``epoch`` (as Ctrl-C does)."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self, epoch, cost, params):
        return epoch >= self.epoch


def test_a_callback_interrupts_and_every_surface_says_so(table, tmp_path, capsys):
    X, y, _ = table
    model, warned = fitted({"optimizer": "gd"}, X, y, callbacks=[StopAt(3)])
    record = check_surfaces(model, warned, tmp_path, capsys)
    assert record.stop_reason == "interrupted" and model.n_iter_ == 4
    assert record.message.startswith("not converged: interrupted after 4 epochs")


def test_refinement_settles_by_its_own_reason_and_only_ctrl_c_interrupts_it(tmp_path, capsys):
    # Refinement's epochs end "settled": the fit's stop reason is the certificate's, never an
    # "interrupted" translated back. A callback that stops the first refinement epoch interrupts the fit.
    # A quintic on 21 points (Wampler-like): cg on the statistics leaves digits for refinement to restore.
    x = np.arange(21.0)
    X = np.column_stack([x**p for p in range(1, 6)])
    y = 1 + X @ [1, 0.1, 0.01, 0.001, 1e-4] + np.random.default_rng(0).normal(size=21)
    for tol in (1e-6, 1e-15):  # one refinement epoch is within 1e-6 here, never within 1e-15
        whole, _ = fitted({"optimizer": "cg", "tol": tol}, X, y)
        assert isinstance(whole._fit_result.refinement, Refinement) and whole.refinement_["status"] == "settled"
        assert whole.stop_reason_ == ("converged" if tol == 1e-6 else "stalled")
        assert whole.refinement_["epochs"] >= 2  # its first epoch does not settle: a stop there is Ctrl-C's
        cg_epochs = whole.n_iter_ - whole.refinement_["epochs"]
        model, warned = fitted({"optimizer": "cg", "tol": tol}, X, y, callbacks=[StopAt(cg_epochs)])
        record = check_surfaces(model, warned, tmp_path, capsys)
        # the refinement's own status is Ctrl-C's; the fit's is the certificate's verdict, as for every fit
        assert record.refinement.status == model.refinement_["status"] == "interrupted"
        assert record.stop_reason == ("converged" if tol == 1e-6 else "interrupted") and record.converged == (tol == 1e-6)
        assert model.refinement_["epochs"] == 1 and model.n_iter_ == cg_epochs + 1


def test_partial_fit_keeps_the_record(table, tmp_path, capsys):
    X, y, _ = table
    model = GDRegressor(optimizer="gd")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for rows in np.array_split(np.arange(len(y)), 4):
            model.partial_fit(X[rows], y[rows])
    record = check_surfaces(model, [str(w.message) for w in caught if w.category is ConvergenceWarning],
                            tmp_path, capsys, warns=False)
    assert model._partial is record and record.certificate.kind == "none" and record.n_iter == 4
    assert record.stop_reason == "max_epochs" and "partial_fit" in record.message


def test_a_diverged_fit_has_no_record_and_one_sentence(table, capsys):
    # Divergence raises before any parameters are kept; the estimator's error and the command
    # line's say the same sentence, each with the advice in its own vocabulary.
    X, y, csv = table
    with pytest.raises(DivergenceError) as caught:
        GDRegressor(optimizer="gd", learning_rate=10.0).fit(X, y)
    exc = caught.value
    assert exc.stop_reason == "diverged" and exc.max_stable_learning_rate < 10.0
    assert str(exc) == divergence_message(exc.epoch, exc.cost, 10.0, exc.max_stable_learning_rate,
                                          'use learning_rate="auto" (1/L, never diverges)')
    capsys.readouterr()
    assert main(["train", str(csv), "--target", "y", "-q", "--optimizer", "gd", "--lr", "10"]) == 1
    assert capsys.readouterr().err == "gradfit: error: " + divergence_message(
        exc.epoch, exc.cost, 10.0, exc.max_stable_learning_rate, "use --lr auto (1/L, never diverges)") + "\n"


def test_a_model_file_without_the_training_message_still_loads(table, tmp_path, capsys):
    # The training section's "message" is optional: a file written before it (format 1) loads,
    # its sentence taken from the fit report it always had.
    X, y, _ = table
    model, _ = fitted({"optimizer": "gd", "epochs": 5}, X, y)
    path = tmp_path / "old.json"
    model.save(path)
    document = json.loads(path.read_text())
    del document["training"]["message"]
    assert document["format_version"] == 1
    path.write_text(json.dumps(document))
    assert load(path).stop_message_ == model.stop_message_
    assert shows_stopped(inspected(path, capsys), model.stop_message_)


# -- no other module writes these words ------------------------------------------------

#: the sentences and labels of how a fit ended (gradfit.result), as they would be written elsewhere
RECORD_WORDS = [
    r"epochs ran out", r"stalled after", r"interrupted after", r"certified within", r"ran all \{",
    r"epoch limit", r"the cost stalled", r"training diverged", r"interrupted, not converged",
    r"converged \(certified\)", r"converged after", r"all epochs run",
]
#: ... and how surfaces used to rebuild them: the lesson page's own words, the CLI's cut of the message
REBUILT = [r"ran every epoch", r"tol met", r"\.split\(\"; use", r"stopped early: interrupted"]
PATTERNS = RECORD_WORDS + REBUILT


def test_no_module_but_the_records_builds_the_stop_messages():
    # The patterns are live: the record's module writes each of its words, in a string the
    # check would flag anywhere else.
    own = [line for line in (PACKAGE / "result.py").read_text(encoding="utf-8").splitlines()
           if not _docstring_line(line)]
    for pattern in RECORD_WORDS:
        assert any(re.search(pattern, line) for line in own), pattern
    found = []
    for path in sorted(PACKAGE.rglob("*")):
        if path.suffix not in (".py", ".js", ".html") or path.name == "result.py":
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#")[0] if path.suffix == ".py" else line
            if any(re.search(pattern, code) for pattern in PATTERNS) and not _docstring_line(code):
                found.append(f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}")
    assert not found, "\n".join(found)


def _docstring_line(code):
    """Prose that names a stop reason (docstrings, comments) is not a message being built."""
    return not re.search(r"""f?["'][^"']*(epochs ran out|stalled after|interrupted after|certified within|ran all|"""
                         r"""ran every epoch|epoch limit|tol met|the cost stalled|training diverged|"""
                         r"""interrupted, not converged|converged \(certified\)|converged after|all epochs run|"""
                         r"""split\(|stopped early)""", code)

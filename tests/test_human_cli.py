"""human-cli: answers read from stdin, each stored in the ledger as it is given."""
import io

from click.testing import CliRunner

from acqkit.cli import cli
from acqkit.round.label import ask_once
from acqkit.store.ledger import Ledger
from acqkit_plugins.human_cli import HumanCliLabeler
from labeling_helpers import context, pairs, table, view


def test_piped_answers_with_a_typo_a_tie_a_skip_and_end_of_input(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("a\nx\nB\nt\ns\n"))
    labeler = HumanCliLabeler()
    with Ledger(tmp_path / "l.sqlite") as ledger:
        out = ask_once(view(ledger, labeler, "human-cli"), labeler, "human-cli",
                       pairs((0, 1), (5, 6), (0, 2), (6, 7), (7, 8)), table(), context())
        stored = {(r.text_a, r.p) for r in ledger.records()}
    assert out[["a", "b"]].values.tolist() == [[0, 1], [5, 6], [0, 2]]  # the skip and the unanswered pair drop
    assert out["p"].tolist() == [1.0, 0.0, 0.5] and out["cost"].tolist() == [1, 1, 1]
    assert stored == {("A masterpiece.", 1.0), ("Hypnotic.", 0.0), ("A masterpiece.", 0.5)}
    err = capsys.readouterr().err
    assert "pair 1 of 5" in err and "Review Citizen Kane." in err and "'x' is not an answer" in err
    assert "remaining 1 pair(s) are skipped" in err


def test_human_labels_are_shared_with_the_web_labeler(tmp_path, monkeypatch):
    from acqkit_plugins.human_web import HumanWebLabeler

    monkeypatch.setattr("sys.stdin", io.StringIO("a\n"))
    cli_labeler = HumanCliLabeler()
    with Ledger(tmp_path / "l.sqlite") as ledger:
        ask_once(view(ledger, cli_labeler, "human-cli"), cli_labeler, "human-cli", pairs((0, 1)), table(), context())
        web = HumanWebLabeler()
        # a later round meets the same pair the other way round: reused, free, no server started
        out = ask_once(view(ledger, web, "human-web", round=2), web, "human-web", pairs((1, 0)), table(), context())
    assert out["p"].tolist() == [0.0] and out["cost"].tolist() == [0]


def test_acqkit_run_with_human_cli_reads_stdin_and_fills_the_ledger(tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["run", "--preset", "smoke", "--labeler", "human-cli", "--rounds", "1",
                                      "--budget", "3", "--seed-labels", "0", "--eval-prompts", "4",
                                      "--kl-samples", "0", "--max-new-tokens", "8", "--out", str(out), "--quiet"],
                                input="a\nb\nt\n")
    assert result.exit_code == 0, result.output
    with Ledger(out / "ledger.sqlite") as ledger:
        assert sorted(r.p for r in ledger.records()) == [0.0, 0.5, 1.0]
        assert {r.labeler for r in ledger.records()} == {"human"}

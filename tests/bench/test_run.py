"""make bench (bench/run.py): one table, crashes reported and failing the run, the real results never overwritten by QUICK."""
from bench import run
from bench.harness import Row


def test_it_reports_a_scenario_that_cannot_even_be_imported_as_failed_with_no_rows(tmp_path):
    rows, failure, seconds = run.run_scenario(
        "no_such_scenario", quick=True, work_root=tmp_path, db_prefix="unused", redis_db=None, template="unused"
    )
    assert rows == [] and failure == "exit status 1"


def test_a_quick_run_lists_skipped_and_crashed_scenarios_fails_and_leaves_results_md_alone(tmp_path, monkeypatch):
    before = run.RESULTS.read_bytes()
    monkeypatch.setenv("BENCH_WORK", str(tmp_path))
    monkeypatch.setattr(run, "SCENARIOS", ("time_travel", "not_written_yet", "fanout"))
    monkeypatch.setattr(run, "recreate_database", lambda name, template=None: None)
    monkeypatch.setattr(run, "migrate", lambda url: None)
    monkeypatch.setattr(run, "machine_line", lambda seconds: "Machine: test")
    outcomes = {
        "time_travel": ([], "exit status 1", 3.0),
        "fanout": ([Row("fan-out", "p99 30 ms", "stock: p99 124 ms", "4.1x faster", "p99 <= 500 ms", True)], None, 5.0),
    }
    monkeypatch.setattr(run, "run_scenario", lambda name, **kwargs: outcomes[name])

    assert run.main(["--quick"]) == 1
    table = (tmp_path / "RESULTS-quick.md").read_text()
    assert "| time_travel | crashed |  |  |  | **no** | exit status 1 after 3 s;" in table
    assert "| not_written_yet | skipped |  |  |  |  | bench/not_written_yet.py does not exist yet |" in table
    assert "| fan-out | p99 30 ms | stock: p99 124 ms | 4.1x faster | p99 <= 500 ms | yes |  |" in table
    assert run.RESULTS.read_bytes() == before

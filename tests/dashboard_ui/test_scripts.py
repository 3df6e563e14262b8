"""The page's own ES modules, run in Chromium from a plain static file server (no Django, no stack)."""
import functools
import threading
from decimal import ROUND_HALF_UP, Decimal
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.dashboard_ui.conftest import launched_chromium

STATIC = Path(__file__).resolve().parents[2] / "dashboard_ui" / "static" / "dashboard_ui"


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def static_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(STATIC)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def module_browser():
    # No database in this module, so one browser can serve all its tests (see conftest.py).
    with launched_chromium() as browser:
        yield browser


@pytest.fixture
def page(module_browser, static_server):
    context = module_browser.new_context()
    page = context.new_page()
    page.goto(f"{static_server}/")
    yield page
    context.close()


def run(page, body: str, arg=None):
    """Evaluate `body` (an async function body) with money, store, live and weeks imported."""
    return page.evaluate(
        """async ([body, arg]) => {
            const [money, store, live, weeks] = await Promise.all(
                ['money', 'store', 'live', 'weeks'].map((name) => import(`/js/${name}.js`)));
            return await new Function('money', 'store', 'live', 'weeks', 'arg', `return (async () => { ${body} })();`)(
                money, store, live, weeks, arg);
        }""",
        [body, arg],
    )


def python_percent(now: str, before: str):
    if Decimal(before) == 0:
        return None
    return str(((Decimal(now) - Decimal(before)) * 100 / Decimal(before)).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP))


PAIRS = [
    ("112.34", "40.00"),
    ("90071992547409.94", "0.30"),
    ("0.00", "10.00"),
    ("1", "3"),
    ("2", "3"),
    ("10.05", "10.00"),
    ("9.95", "10.00"),
    ("1234", "1234"),
    ("5.00", "0.00"),
    ("999999999999999.99", "999999999999999.98"),
]


def test_percent_change_is_exact_on_minor_units_and_rounds_half_away_from_zero(page):
    got = run(page, "return arg.map(([a, b]) => money.percentChange(a, b));", PAIRS)
    assert got == [python_percent(a, b) for a, b in PAIRS]


def test_money_is_displayed_with_the_servers_digits_grouped_and_never_rounded(page):
    cases = [
        ["90071992547409.94", "EUR"],
        ["1234", "JPY"],
        ["0.00", "USD"],
        ["1000.5", "CHF"],
        ["12.30", "CAD"],
        ["1.234", "KWD"],
        ["5", "KWD"],
    ]
    got = run(page, "return arg.map(([v, c]) => money.formatMoney(v, c));", cases)
    # Padded to the currency's minor digits (never rounded), the code or symbol shown once.
    assert got == [
        "€90,071,992,547,409.94",
        "¥1,234",
        "$0.00",
        "CHF\u00a01,000.50",
        "CA$12.30",
        "KWD\u00a01.234",
        "KWD\u00a05.000",
    ]
    assert run(page, "return money.sumDecimals(['45035996273704.97', '45035996273704.97', '0.10']);") == "90071992547410.04"
    assert run(page, "return money.sumDecimals([], 2);") == "0.00"
    assert run(page, "return [money.formatPercent('12.3'), money.formatPercent('-4.0'), money.formatPercent(null)];") == [
        "+12.3%",
        "\u22124.0%",
        "\u2014",
    ]


SNAPSHOT = {
    "type": "snapshot",
    "seq": 10,
    "time_zone": "UTC",
    "week_start_day": "monday",
    "weekly_income": [
        {"week_start": "2026-11-09", "currency": "EUR", "total": "1.00", "count": 1},
        {"week_start": "2026-11-16", "currency": "EUR", "total": "2.00", "count": 1},
    ],
    "pending": {"count": 2, "latest": [
        {"id": "b", "created_at": "2026-11-16T10:00:01Z", "amount": "5.00", "currency": "EUR", "status": "pending"},
        {"id": "a", "created_at": "2026-11-16T10:00:00Z", "amount": "4.00", "currency": "EUR", "status": "pending"},
    ]},
}


def test_a_weekly_update_applies_only_when_its_seq_is_newer_than_the_cells(page):
    got = run(
        page,
        """
        const s = new store.DashboardState();
        s.applyMessage(arg);
        const update = (seq, total) => s.applyMessage(
            {type: 'weekly_income.updated', seq, week_start: '2026-11-16', currency: 'EUR', total, count: 2}).kind;
        const kinds = [update(9, '9.00'), update(10, '10.00'), update(12, '12.00'), update(11, '11.00'), update(12, '99.00')];
        return {kinds, total: s.cell('2026-11-16', 'EUR').total, lastSeq: s.lastSeq,
                older: s.cell('2026-11-09', 'EUR').total, weeks: s.weeks().length, last: s.weeks().at(-1)};
        """,
        SNAPSHOT,
    )
    assert got == {
        "kinds": ["ignored", "ignored", "weekly", "ignored", "ignored"],
        "total": "12.00",
        "lastSeq": 12,
        "older": "1.00",
        "weeks": 12,
        "last": "2026-11-16",
    }


def test_a_rest_read_never_overwrites_a_cell_with_a_newer_live_value(page):
    got = run(
        page,
        """
        const s = new store.DashboardState();
        s.applyMessage(arg);
        s.applyMessage({type: 'weekly_income.updated', seq: 20, week_start: '2026-11-16', currency: 'EUR', total: '3.00', count: 2});
        s.applyWeeklyRows([{week_start: '2026-11-16', currency: 'EUR', total: '2.50', count: 1},
                           {week_start: '2026-05-04', currency: 'EUR', total: '7.00', count: 1}], 15);
        return [s.cell('2026-11-16', 'EUR').total, s.cell('2026-05-04', 'EUR').total, s.lastSeq];
        """,
        SNAPSHOT,
    )
    assert got == ["3.00", "7.00", 20]  # a REST as_of is not a websocket seq


def test_each_decision_and_submission_changes_the_queue_once_whatever_order_and_source(page):
    got = run(
        page,
        """
        const s = new store.DashboardState();
        s.applyMessage(arg);
        const txn = (id, created_at) => ({id, created_at, amount: '1.00', currency: 'EUR', decided_by: 'x'});
        const counts = [];
        s.applyDecision(txn('a', '2026-11-16T10:00:00Z'), 'approved', 11);            // this page's own REST call
        counts.push(s.pendingCount);
        s.applyMessage({type: 'transaction.approved', seq: 11, transaction: txn('a', '2026-11-16T10:00:00Z')});
        counts.push(s.pendingCount);                                                   // the same decision again
        s.applyMessage({type: 'transaction.submitted', seq: 12, transaction: txn('c', '2026-11-16T11:00:00Z')});
        s.applyMessage({type: 'transaction.submitted', seq: 12, transaction: txn('c', '2026-11-16T11:00:00Z')});
        counts.push(s.pendingCount);
        s.applyMessage({type: 'transaction.rejected', seq: 14, transaction: txn('d', '2026-11-16T12:00:00Z')});
        s.applyMessage({type: 'transaction.submitted', seq: 13, transaction: txn('d', '2026-11-16T12:00:00Z')});
        counts.push(s.pendingCount);                                                   // out of order: nets to zero
        s.applyMessage({type: 'transaction.approved', seq: 9, transaction: txn('b', '2026-11-16T10:00:01Z')});
        counts.push(s.pendingCount);                                                   // older than the snapshot
        return {counts, rows: s.pendingRows().map((t) => t.id), feed: s.feed.map((e) => e.key)};
        """,
        SNAPSHOT,
    )
    assert got == {
        "counts": [1, 1, 2, 2, 2],
        "rows": ["c", "b"],
        "feed": [
            "transaction.submitted:d",
            "transaction.rejected:d",
            "transaction.submitted:c",
            "transaction.approved:a",
        ],
    }


def test_a_new_snapshot_is_the_new_truth_for_the_queue(page):
    got = run(
        page,
        """
        const s = new store.DashboardState();
        s.applyMessage(arg);
        s.applyMessage({type: 'transaction.submitted', seq: 12, transaction: {id: 'c', created_at: '2026-11-16T11:00:00Z'}});
        s.applyMessage({...arg, seq: 30, pending: {count: 1, latest: [arg.pending.latest[1]]}});
        return [s.pendingCount, s.pendingRows().map((t) => t.id), s.snapshotSeq, s.lastSeq];
        """,
        SNAPSHOT,
    )
    assert got == [1, ["a"], 30, 30]


def test_older_pending_pages_add_only_rows_older_than_those_shown_and_skip_decided_ones(page):
    got = run(
        page,
        """
        const s = new store.DashboardState();
        s.applyMessage({...arg, pending: {count: 4, latest: arg.pending.latest}});
        s.applyMessage({type: 'transaction.approved', seq: 11, transaction: {id: 'x', created_at: '2026-11-01T00:00:00Z'}});
        const row = (id, created_at) => ({id, created_at, status: 'pending', amount: '1.00', currency: 'EUR'});
        const added = s.addPendingPage([
            row('new', '2026-11-17T00:00:00Z'),  // newer than the list: the socket brings it, counted once
            row('b', '2026-11-16T10:00:01Z'),    // already shown
            row('x', '2026-11-01T00:00:00Z'),    // decided meanwhile
            row('y', '2026-11-02T00:00:00Z'),
        ], null);
        return [added, s.pendingRows().map((t) => t.id), s.pendingCount, s.pendingComplete];
        """,
        SNAPSHOT,
    )
    assert got == [1, ["b", "a", "y"], 3, True]


def test_reconnect_delays_use_full_jitter_doubling_from_one_second_up_to_a_30_second_cap(page):
    got = run(
        page,
        """
        const top = new live.LiveSocket('ws://x', {random: () => 0.999999});
        const bottom = new live.LiveSocket('ws://x', {random: () => 0});
        return [[0, 1, 2, 3, 4, 5, 6, 10].map((n) => top.backoffDelay(n)), bottom.backoffDelay(8)];
        """,
    )
    assert got == [[999, 1999, 3999, 7999, 15999, 29999, 29999, 29999], 0]


FAKE_SOCKET = """
    const sockets = [];
    class FakeSocket {
        static OPEN = 1;
        constructor(url) { this.url = url; this.sent = []; this.readyState = 0; this.closedWith = null; sockets.push(this);
                           setTimeout(() => { this.readyState = 1; this.onopen && this.onopen(); }, 5); }
        send(text) { this.sent.push(JSON.parse(text)); }
        close(code) { this.closedWith = code; this.readyState = 3; }
        serverSends(message) { this.onmessage && this.onmessage({data: JSON.stringify(message)}); }
        serverCloses(code) { this.readyState = 3; this.onclose && this.onclose({code}); }
    }
    window.WebSocket = FakeSocket;
    const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
    const states = [];
"""


def test_a_socket_without_pong_is_dropped_and_the_new_one_resumes_from_the_last_applied_seq(page):
    got = run(
        page,
        FAKE_SOCKET
        + """
        const conn = new live.LiveSocket('ws://x/ws/dashboard/', {
            heartbeatMs: 40, pongTimeoutMs: 40, baseDelayMs: 10, resumeFrom: () => 42});
        conn.addEventListener('state', (e) => states.push(e.detail.state));
        conn.start();
        await sleep(20);
        sockets[0].serverSends({type: 'snapshot', seq: 42});
        await sleep(60);
        const pinged = sockets[0].sent.map((m) => m.type);
        sockets[0].serverSends({type: 'pong'});   // the first ping is answered
        await sleep(150);                          // the next one is not
        await sleep(50);
        return {pinged, first: sockets[0].closedWith, count: sockets.length, resumed: sockets[1].sent[0], states};
        """,
    )
    assert got["pinged"][:1] == ["ping"]
    assert got["first"] == 4000
    assert got["count"] >= 2
    assert got["resumed"] == {"type": "resume", "since": 42}
    assert got["states"][:3] == ["connecting", "connected", "reconnecting"]


def test_close_codes_4401_and_4403_stop_reconnecting(page):
    got = run(
        page,
        FAKE_SOCKET
        + """
        const results = [];
        for (const code of [4401, 4403]) {
            const before = sockets.length;
            const conn = new live.LiveSocket('ws://x', {baseDelayMs: 1});
            conn.start();
            await sleep(20);
            sockets.at(-1).serverCloses(code);
            await sleep(50);
            results.push([conn.state, sockets.length - before]);
        }
        return results;
        """,
    )
    assert got == [["signed-out", 1], ["forbidden", 1]]


def test_offline_closes_the_socket_and_online_reconnects_at_once(page):
    got = run(
        page,
        FAKE_SOCKET
        + """
        const conn = new live.LiveSocket('ws://x', {baseDelayMs: 60_000, resumeFrom: () => 7});
        conn.addEventListener('state', (e) => states.push(e.detail.state));
        conn.start();
        await sleep(20);
        sockets[0].serverSends({type: 'snapshot', seq: 7});
        window.dispatchEvent(new Event('offline'));
        const closed = sockets[0].closedWith;
        const whileOffline = sockets.length;
        window.dispatchEvent(new Event('online'));
        await sleep(20);
        return {closed, whileOffline, sockets: sockets.length, resumed: sockets[1].sent[0], states};
        """,
    )
    assert got == {
        "closed": 1000,
        "whileOffline": 1,
        "sockets": 2,  # no 60 s backoff wait: reconnected at once
        "resumed": {"type": "resume", "since": 7},
        "states": ["connecting", "connected", "offline", "reconnecting"],
    }


def test_weeks_start_on_the_configured_day_and_ranges_end_with_the_given_week(page):
    got = run(
        page,
        """
        return [weeks.weekStartOf('2026-11-22', 'monday'), weeks.weekStartOf('2026-11-22', 'sunday'),
                weeks.weekStartOf('2026-11-16', 'monday'), weeks.weekRange('2026-01-05', 3),
                weeks.todayIn('Pacific/Kiritimati', new Date('2026-11-22T23:30:00Z'))];
        """,
    )
    assert got == ["2026-11-16", "2026-11-22", "2026-11-16", ["2025-12-22", "2025-12-29", "2026-01-05"], "2026-11-23"]

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
    """Evaluate `body` (an async function body) with money, store, live, weeks and decisions imported."""
    return page.evaluate(
        """async ([body, arg]) => {
            const [money, store, live, weeks, decisions] = await Promise.all(
                ['money', 'store', 'live', 'weeks', 'decisions'].map((name) => import(`/js/${name}.js`)));
            return await new Function('money', 'store', 'live', 'weeks', 'decisions', 'arg', `return (async () => { ${body} })();`)(
                money, store, live, weeks, decisions, arg);
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
    # Axis labels: the sign before the symbol, as amounts are written (a net week can be negative).
    assert run(page, "return [money.formatCompact(-5000, 'EUR'), money.formatCompact(250000, 'JPY')];") == ["\u2212€5K", "¥250K"]
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


def test_transaction_messages_up_to_the_position_the_snapshots_queue_was_read_at_only_reach_the_feed(page):
    # The queue is read at pending.as_of, ahead of the snapshot's seq while the projector lags:
    # the socket then delivers (seq, as_of] again, and the count must not move twice.
    got = run(
        page,
        """
        const txn = (id, created_at) => ({id, created_at, amount: '1.00', currency: 'EUR', status: 'pending'});
        const counts = [];
        // A resync after this page's own approval of 'a' (position 11): the queue already lacks 'a'.
        const s = new store.DashboardState();
        s.applyMessage({...arg, pending: {count: 2, latest: arg.pending.latest, as_of: 10}});
        s.applyDecision(txn('a', '2026-11-16T10:00:00Z'), 'approved', 11);
        counts.push(s.pendingCount);
        // Read at 13: without 'a', with 'c' and 'd' counted but not listed (as past the newest 20).
        s.applyMessage({...arg, pending: {count: 3, latest: [arg.pending.latest[0]], as_of: 13}});
        counts.push(s.pendingCount);
        s.applyMessage({type: 'transaction.approved', seq: 11, transaction: txn('a', '2026-11-16T10:00:00Z')});
        // Two submissions the snapshot counted but did not list, one it did not see, and an old approval.
        s.applyMessage({type: 'transaction.submitted', seq: 12, transaction: txn('c', '2026-11-16T11:00:00Z')});
        s.applyMessage({type: 'transaction.submitted', seq: 13, transaction: txn('d', '2026-11-16T12:00:00Z')});
        counts.push(s.pendingCount);
        s.applyMessage({type: 'transaction.submitted', seq: 14, transaction: txn('e', '2026-11-16T13:00:00Z')});
        counts.push(s.pendingCount);
        return {counts, rows: s.pendingRows().map((t) => t.id), feed: s.feed.map((e) => e.key)};
        """,
        SNAPSHOT,
    )
    assert got == {
        "counts": [1, 3, 3, 4],
        "rows": ["e", "b"],
        "feed": ["transaction.submitted:e", "transaction.submitted:d", "transaction.submitted:c", "transaction.approved:a"],
    }


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


def test_a_weekly_cell_keeps_net_as_its_total_with_gross_and_reversed_beside_it(page):
    got = run(
        page,
        """
        const s = new store.DashboardState();
        s.applyMessage(arg);
        const before = s.hasReversals('EUR');
        const put = s.applyMessage({type: 'weekly_income.updated', seq: 11, week_start: '2026-11-16', currency: 'EUR',
                                    total: '-3.00', count: 1, gross: '2.00', reversed: '5.00', net: '-3.00', reversed_count: 2});
        const cell = s.cell('2026-11-16', 'EUR');
        const old = s.cell('2026-11-09', 'EUR');  // a row without the breakdown: nothing was reversed
        return {before, after: s.hasReversals('EUR'), layout: put.weekly.layout, changed: put.weekly.changed,
                cell: [cell.total, cell.gross, cell.reversed, cell.reversedCount],
                old: [old.total, old.gross, old.reversed, old.reversedCount]};
        """,
        SNAPSHOT,
    )
    assert got == {
        "before": False,
        "after": True,
        "layout": True,  # the table grows gross and reversed columns for EUR
        "changed": ["2026-11-16|EUR"],
        "cell": ["-3.00", "2.00", "5.00", 2],
        "old": ["1.00", "1.00", "0.00", 0],
    }


def test_a_first_approval_keeps_the_row_marked_and_a_reversal_is_applied_once(page):
    got = run(
        page,
        """
        const s = new store.DashboardState();
        s.applyMessage(arg);
        const big = {id: 'b', created_at: '2026-11-16T10:00:01Z', amount: '5.00', currency: 'EUR',
                     status: 'awaiting_second_approval', first_approved_by: 'ada'};
        const kinds = [s.applyMessage({type: 'transaction.approval_recorded', seq: 11, transaction: big}).kind,
                       s.applyMessage({type: 'transaction.approval_recorded', seq: 11, transaction: big}).kind];
        const marked = [s.pendingCount, s.pending.get('b').status, s.pending.get('b').first_approved_by];
        s.applyMessage({type: 'transaction.approved', seq: 12, transaction: {...big, status: 'approved', decided_by: 'grace'}});
        const approved = [s.pendingCount, s.pending.has('b'), s.isReversed('b')];
        const reversal = {...big, status: 'reversed', decided_by: 'grace', decision_reason: 'refund'};
        const own = s.applyReversal(reversal, 13).kind;           // this page's own REST answer
        const echo = s.applyMessage({type: 'transaction.reversed', seq: 13, transaction: reversal}).kind;
        // Another page's view: its own reversal answer came before the socket's approval of 'a'.
        const t = new store.DashboardState();
        t.applyMessage(arg);
        t.applyReversal({id: 'a', created_at: '2026-11-16T10:00:00Z', status: 'reversed'}, 21);
        t.applyMessage({type: 'transaction.approved', seq: 20, transaction: {id: 'a', created_at: '2026-11-16T10:00:00Z'}});
        return {kinds, marked, approved, own, echo, reversed: s.isReversed('b'), pending: s.pendingCount,
                feed: s.feed.map((e) => e.key), lateEcho: [t.isReversed('a'), t.pending.has('a')]};
        """,
        SNAPSHOT,
    )
    assert got == {
        "kinds": ["queue", "ignored"],
        "marked": [2, "awaiting_second_approval", "ada"],
        "approved": [1, False, False],
        "own": "queue",
        "echo": "ignored",
        "reversed": True,
        "pending": 1,
        "feed": ["transaction.reversed:b", "transaction.approved:b", "transaction.approval_recorded:b"],
        "lateEcho": [True, False],  # a late approval never makes a reversed transaction reversible again
    }


def test_review_queue_figures_come_from_the_snapshot_and_only_newer_updates_for_this_week_replace_them(page):
    snapshot = {
        **SNAPSHOT,
        "review_queue": {
            "pending": {"count": 2, "oldest_submitted_at": "2026-11-16T10:00:00Z", "oldest_age_seconds": 60},
            "this_week": {"week_start": "2026-11-16", "decisions": 1, "time_to_decision_p50_seconds": 30},
        },
    }
    got = run(
        page,
        """
        const s = new store.DashboardState();
        s.applyMessage(arg);
        const first = [s.review.pending.count, s.review.week.time_to_decision_p50_seconds];
        const week = (p50, week_start = '2026-11-16') => ({week_start, decisions: 2, time_to_decision_p50_seconds: p50});
        const kinds = [
            s.applyMessage({type: 'review_queue.updated', seq: 9, week: week(1), pending: {count: 9}}).kind,    // before the snapshot
            s.applyMessage({type: 'review_queue.updated', seq: 12, week: week(45), pending: {count: 1}}).kind,
            s.applyMessage({type: 'review_queue.updated', seq: 11, week: week(99), pending: {count: 7}}).kind,  // out of order
            s.applyMessage({type: 'review_queue.updated', seq: 13, week: week(5, '2026-11-09'), pending: {count: 0}}).kind,
        ];
        return {first, kinds, now: [s.review.pending.count, s.review.week.time_to_decision_p50_seconds, s.review.week.week_start]};
        """,
        snapshot,
    )
    assert got == {
        "first": [2, 30],
        "kinds": ["ignored", "review", "ignored", "review"],
        "now": [0, 45, "2026-11-16"],  # an older week's figures never replace this week's
    }


def test_the_queue_search_matches_reference_description_and_amount_and_the_currency_filter_is_exact(page):
    txns = [
        {"id": "1", "reference": "INV-2002", "description": "Consulting retainer", "amount": "1200.50", "currency": "EUR"},
        {"id": "2", "reference": "PO-77", "description": "Office chairs", "amount": "12.34", "currency": "USD"},
        {"id": "3", "reference": "", "description": "", "amount": "120", "currency": "JPY"},
    ]
    cases = [
        {"search": "inv-2002"},
        {"search": "retainer consulting"},
        {"search": "€1,200.5"},
        {"search": "12"},
        {"search": "12", "currency": "USD"},
        {"currency": "JPY"},
        {"search": "chairs", "currency": "EUR"},
        {"search": "  "},
    ]
    got = run(
        page,
        "return arg.cases.map((f) => arg.txns.filter((t) => decisions.matchesFilter(t, f)).map((t) => t.id));",
        {"txns": txns, "cases": cases},
    )
    assert got == [["1"], ["1"], ["1"], ["1", "2", "3"], ["2"], ["3"], [], ["1", "2", "3"]]


def test_refused_decisions_are_said_in_plain_words_and_a_bulk_answer_splits_into_done_and_refused(page):
    got = run(
        page,
        """
        const own = decisions.problemMessage({status: 403, code: 'own_submission', detail: 'x'}, 'INV-1');
        const second = decisions.problemMessage({status: 403, code: 'second_approver_required', detail: 'x'}, 'INV-2');
        const field = decisions.problemMessage({status: 400, code: 'invalid_request', errors: [{field: 'reason', message: 'This field is required.'}]}, 'INV-3');
        const other = decisions.problemMessage({status: 418, code: 'teapot', detail: 'I am a teapot.'}, 'INV-4');
        const split = decisions.bulkOutcome({position: 42, results: [
            {id: 'a', action: 'approve', status: 200, transaction: {id: 'a', status: 'approved'}, position: 41},
            {id: 'b', action: 'approve', status: 403, problem: {code: 'own_submission', status: 403}},
            {id: 'c', action: 'approve', status: 200, transaction: {id: 'c', status: 'approved'}, position: 42},
        ]});
        return {own, second, field, other, done: split.done.map((i) => i.id), failed: split.failed.map((i) => i.id), position: split.position};
        """,
    )
    assert got["own"].startswith("You submitted INV-1 yourself, so you cannot approve it")
    assert "another admin" in got["own"] and "reject" in got["own"]
    assert got["second"].startswith("You already gave INV-2 its first approval")
    assert got["field"] == "INV-3: This field is required."
    assert got["other"] == "INV-4: I am a teapot."
    assert (got["done"], got["failed"], got["position"]) == (["a", "c"], ["b"], 42)


def test_durations_read_as_seconds_minutes_hours_or_days(page):
    got = run(page, "return arg.map((s) => weeks.formatDuration(s));", [0, 42, 725, 11520, 187200, -5])
    assert got == ["0 s", "42 s", "12 min 5 s", "3 h 12 min", "2 d 4 h", "0 s"]

// The dashboard websocket: reconnects with exponential backoff and full jitter,
// resumes from the last applied seq, and detects dead sockets with a heartbeat.
//
// Events (EventTarget): "state" {state, retryAt, code}, "message" (parsed JSON).
// States: connecting, connected, reconnecting, offline, signed-out, forbidden.

export const CLOSE_UNAUTHENTICATED = 4401;
export const CLOSE_FORBIDDEN = 4403;

export class LiveSocket extends EventTarget {
  constructor(url, {
    resumeFrom = () => null,
    heartbeatMs = 15_000,
    pongTimeoutMs = 10_000,
    openTimeoutMs = 10_000,
    baseDelayMs = 1_000,
    maxDelayMs = 30_000,
    random = Math.random,
  } = {}) {
    super();
    this.url = url;
    this.resumeFrom = resumeFrom;
    this.heartbeatMs = heartbeatMs;
    this.pongTimeoutMs = pongTimeoutMs;
    this.openTimeoutMs = openTimeoutMs;
    this.openTimer = null;
    this.baseDelayMs = baseDelayMs;
    this.maxDelayMs = maxDelayMs;
    this.random = random;
    this.socket = null;
    this.state = "connecting";
    this.failures = 0;
    this.everConnected = false;
    this.retryTimer = null;
    this.heartbeatTimer = null;
    this.pongTimer = null;
    this.retryAt = null;
  }

  start() {
    window.addEventListener("offline", () => this.goOffline());
    window.addEventListener("online", () => this.comeOnline());
    if (navigator.onLine === false) this.goOffline();
    else this.connect();
  }

  /** Full jitter: a uniform delay in [0, min(cap, base * 2^attempt)). */
  backoffDelay(attempt) {
    const ceiling = Math.min(this.maxDelayMs, this.baseDelayMs * 2 ** attempt);
    return Math.floor(this.random() * ceiling);
  }

  setState(state, extra = {}) {
    this.state = state;
    this.dispatchEvent(new CustomEvent("state", { detail: { state, ...extra } }));
  }

  connect() {
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.retryAt = null;
    if (this.state !== "reconnecting") this.setState("connecting");
    let socket;
    try {
      socket = new WebSocket(this.url);
    } catch {
      this.scheduleReconnect();
      return;
    }
    this.socket = socket;
    // A handshake that never completes (or a socket that never sends its snapshot)
    // would otherwise leave the page "reconnecting" for good.
    clearTimeout(this.openTimer);
    this.openTimer = setTimeout(() => this.dead("open timeout"), this.openTimeoutMs);
    socket.onopen = () => {
      const since = this.everConnected ? this.resumeFrom() : null;
      if (since !== null && since !== undefined) this.send({ type: "resume", since });
      this.startHeartbeat();
    };
    socket.onmessage = (event) => this.receive(event.data);
    socket.onclose = (event) => this.closed(socket, event.code);
    socket.onerror = () => {}; // a close event always follows
  }

  receive(text) {
    let message;
    try {
      message = JSON.parse(text);
    } catch {
      return;
    }
    clearTimeout(this.openTimer);
    this.openTimer = null;
    if (message.type === "pong") {
      clearTimeout(this.pongTimer);
      this.pongTimer = null;
      return;
    }
    if (this.state !== "connected") {
      this.everConnected = true;
      this.failures = 0;
      this.setState("connected");
    }
    this.dispatchEvent(new CustomEvent("message", { detail: message }));
  }

  send(message) {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) {
      this.socket.send(JSON.stringify(message));
      return true;
    }
    return false;
  }

  /** Ask the server for a fresh snapshot (it answers a resume with one). */
  resync(since) {
    return this.send({ type: "resume", since });
  }

  startHeartbeat() {
    this.stopHeartbeat();
    this.heartbeatTimer = setInterval(() => {
      if (this.pongTimer !== null) return;
      if (!this.send({ type: "ping" })) return;
      this.pongTimer = setTimeout(() => this.dead(), this.pongTimeoutMs);
    }, this.heartbeatMs);
  }

  stopHeartbeat() {
    clearTimeout(this.openTimer);
    this.openTimer = null;
    clearInterval(this.heartbeatTimer);
    clearTimeout(this.pongTimer);
    this.heartbeatTimer = null;
    this.pongTimer = null;
  }

  /** Drop the current socket without waiting for its close handshake. */
  abandon(code, reason) {
    const socket = this.socket;
    this.socket = null;
    this.stopHeartbeat();
    if (!socket) return;
    socket.onopen = socket.onmessage = socket.onclose = socket.onerror = null;
    try {
      socket.close(code, reason);
    } catch {
      // already closing
    }
  }

  dead(reason = "heartbeat timeout") {
    // No pong (or no first message) in time: the connection is gone even if the browser has not noticed.
    this.abandon(4000, reason);
    this.scheduleReconnect();
  }

  closed(socket, code) {
    if (socket !== this.socket) return;
    console.info(`dashboard socket closed with code ${code}`);
    this.socket = null;
    this.stopHeartbeat();
    if (code === CLOSE_UNAUTHENTICATED) {
      this.setState("signed-out", { code });
      return;
    }
    if (code === CLOSE_FORBIDDEN) {
      this.setState("forbidden", { code });
      return;
    }
    if (navigator.onLine === false) {
      this.goOffline();
      return;
    }
    this.scheduleReconnect(code);
  }

  scheduleReconnect(code) {
    if (this.state === "offline") return;
    const delay = this.backoffDelay(this.failures);
    this.failures += 1;
    this.retryAt = Date.now() + delay;
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.connect(), delay);
    this.setState("reconnecting", { retryAt: this.retryAt, code });
  }

  goOffline() {
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.retryAt = null;
    this.abandon(1000, "offline");
    if (this.state !== "signed-out" && this.state !== "forbidden") this.setState("offline");
  }

  comeOnline() {
    if (this.state !== "offline") return;
    this.failures = 0;
    this.setState("reconnecting", { retryAt: Date.now() });
    this.connect();
  }
}

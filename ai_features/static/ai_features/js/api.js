// HTTP helpers: the stream service (bearer token, refreshed before it expires and once more
// on a 401) and c3-app's JSON API (session cookie + CSRF header).

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || code || `HTTP ${status}`);
    this.status = status;
    this.code = code || "";
  }
}

export function readCookie(name) {
  for (const part of document.cookie ? document.cookie.split(";") : []) {
    const [key, ...rest] = part.trim().split("=");
    if (key === name) return decodeURIComponent(rest.join("="));
  }
  return "";
}

export function csrfToken() {
  const fromCookie = readCookie("csrftoken");
  if (fromCookie) return fromCookie;
  const input = document.querySelector("input[name=csrfmiddlewaretoken]");
  return input ? input.value : "";
}

const REFRESH_MARGIN_SECONDS = 60;

export class Api {
  constructor(config, { onSessionExpired } = {}) {
    this.config = config;
    this.streamBase = (config.streamUrl || "").replace(/\/+$/, "");
    this.streamPath = config.streamPath || "/api/ai/chat/stream/";
    this.token = config.token || "";
    this.expiresIn = Number(config.tokenExpiresIn) || 300;
    this.tokenAt = Date.now();
    this.onSessionExpired = onSessionExpired || (() => {});
    this.refreshing = null;
    this.timer = null;
    this.scheduleRefresh();
    document.addEventListener("visibilitychange", () => {
      // Timers are throttled in background tabs: catch up when the tab comes back.
      if (document.visibilityState === "visible" && this.tokenStale()) {
        this.refreshToken().catch(() => {});
      }
    });
  }

  streamUrl(suffix = "") {
    return `${this.streamBase}${this.streamPath}${suffix}`;
  }

  tokenStale() {
    const margin = Math.min(REFRESH_MARGIN_SECONDS / 2, this.expiresIn / 4);
    return Date.now() - this.tokenAt > (this.expiresIn - margin) * 1000;
  }

  scheduleRefresh(delaySeconds) {
    clearTimeout(this.timer);
    const margin = Math.min(REFRESH_MARGIN_SECONDS, this.expiresIn / 4);
    const delay = delaySeconds ?? Math.max(5, this.expiresIn - margin);
    this.timer = setTimeout(() => {
      this.refreshToken().catch(() => {});
    }, delay * 1000);
  }

  /** A fresh stream token from c3-app (same origin, session cookie). Single-flight. */
  refreshToken() {
    if (!this.refreshing) {
      this.refreshing = (async () => {
        let response;
        try {
          response = await fetch(this.config.tokenUrl, {
            credentials: "same-origin",
            headers: { Accept: "application/json" },
            cache: "no-store",
          });
        } catch (error) {
          this.scheduleRefresh(30);
          throw new ApiError(0, "network_error", String(error));
        }
        if (response.status === 401 || response.status === 403) {
          clearTimeout(this.timer);
          this.onSessionExpired();
          throw new ApiError(response.status, "unauthenticated");
        }
        if (!response.ok) {
          this.scheduleRefresh(30);
          throw new ApiError(response.status, "internal_error");
        }
        const data = await response.json();
        this.token = data.token;
        this.expiresIn = Number(data.expires_in) || this.expiresIn;
        this.tokenAt = Date.now();
        if (typeof data.stream_url === "string") {
          this.streamBase = data.stream_url.replace(/\/+$/, "");
        }
        this.scheduleRefresh();
        return this.token;
      })().finally(() => {
        this.refreshing = null;
      });
    }
    return this.refreshing;
  }

  streamHeaders(extra = {}) {
    const headers = { ...extra };
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    // Needed by c3-app's same-origin fallback, and by the stream service on cookie auth.
    const csrf = csrfToken();
    if (csrf) headers["X-CSRFToken"] = csrf;
    return headers;
  }

  /**
   * fetch() against the stream service. A 401 means the token expired: get a fresh one
   * and try once more, transparently.
   */
  async streamFetch(suffix, { method = "GET", body, headers = {}, signal } = {}) {
    if (this.tokenStale()) {
      try {
        await this.refreshToken();
      } catch {
        /* the request below tells the caller what is wrong */
      }
    }
    const attempt = () =>
      fetch(this.streamUrl(suffix), {
        method,
        body,
        signal,
        credentials: "include",
        cache: "no-store",
        headers: this.streamHeaders(headers),
      });
    let response = await attempt();
    if (response.status === 401) {
      try {
        await this.refreshToken();
      } catch {
        return response;
      }
      response.body?.cancel().catch(() => {});
      response = await attempt();
    }
    return response;
  }

  /** c3-app's JSON API. Throws ApiError with the server's error code. */
  async json(method, url, body) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (method !== "GET") headers["X-CSRFToken"] = csrfToken();
    let response;
    try {
      response = await fetch(url, {
        method,
        headers,
        credentials: "same-origin",
        cache: "no-store",
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (error) {
      throw new ApiError(0, "network_error", String(error));
    }
    if (response.status === 204) return null;
    let data = null;
    try {
      data = await response.json();
    } catch {
      data = null;
    }
    if (!response.ok) {
      const code = data && data.error ? data.error.code : "";
      if (response.status === 401) this.onSessionExpired();
      throw new ApiError(response.status, code, data && data.error ? data.error.message : "");
    }
    return data;
  }
}

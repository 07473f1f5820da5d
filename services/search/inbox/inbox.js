// The creator's inbox: open clusters, their messages, one reply per cluster and its delivery.
// Talks only to the search service's HTTP API. Every text from the API is set with textContent
// (never innerHTML), and the API key lives in sessionStorage, sent only in the Authorization header.
"use strict";

(() => {
  const KEY_STORE = "chorus.inbox.apiKey";
  const CREATOR_STORE = "chorus.inbox.creator";
  const CLUSTER_PAGE = 20;
  const MESSAGE_PAGE = 20;
  const POLL_MS = 1000;
  const POLL_GIVE_UP_MS = 5 * 60 * 1000;
  // Pages of GET /v1/clusters read to suggest creators; a tenant with more types the id.
  const CREATOR_SCAN_PAGES = 5;

  const $ = (id) => document.getElementById(id);
  const state = {
    key: sessionStorage.getItem(KEY_STORE),
    creator: sessionStorage.getItem(CREATOR_STORE),
    status: "open",
    clusterCursor: null,
    selected: null, // the cluster shown on the right, as GET /v1/clusters/{id} answered it
    messageCursor: null,
    channelNames: new Map(), // channel_cid -> the fan's name, from the messages read so far
    poll: null,
    generation: 0, // bumped on every change of view, so that late answers of an old view are dropped
  };

  class ApiError extends Error {
    constructor(status, title, detail) {
      super(detail ? `${title}: ${detail}` : title);
      this.status = status;
    }
  }

  async function api(path, options = {}) {
    const headers = { Accept: "application/json", Authorization: `Bearer ${state.key}` };
    if (options.body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(path, { ...options, headers, cache: "no-store", credentials: "omit" });
    } catch (error) {
      throw new ApiError(0, "The search service did not answer", "check that it runs and try again");
    }
    if (response.ok) return response.json();
    let title = `${response.status} ${response.statusText}`.trim();
    let detail = "";
    try {
      const problem = await response.json();
      title = problem.title || title;
      detail = problem.detail || "";
    } catch (error) {
      // A body that is not JSON (a proxy's page, say): the status line says enough.
    }
    if (response.status === 401) {
      signOut("Your API key was refused; sign in again.");
    }
    throw new ApiError(response.status, title, detail);
  }

  // ---- small DOM helpers -------------------------------------------------------------------

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function announce(message) {
    $("status").textContent = message;
  }

  function showError(error) {
    // Shown before the text is set, so that screen readers announce the alert's new text.
    $("error").hidden = false;
    $("error-text").textContent = error instanceof Error ? error.message : String(error);
  }

  function clearError() {
    $("error").hidden = true;
    $("error-text").textContent = "";
  }

  function plural(count, one, many) {
    return `${count} ${count === 1 ? one : many}`;
  }

  const relative = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
  const absolute = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

  // Seconds up to which each unit is used, finest first; older than a week shows the date.
  const UNITS = [[3600, 60, "minute"], [86400, 3600, "hour"], [604800, 86400, "day"]];

  function when(iso) {
    if (!iso) return "";
    const date = new Date(iso);
    const seconds = (date.getTime() - Date.now()) / 1000;
    if (Math.abs(seconds) < 45) return "just now";
    for (const [below, size, unit] of UNITS) {
      if (Math.abs(seconds) < below) return relative.format(Math.round(seconds / size), unit);
    }
    return absolute.format(date);
  }

  function timeElement(iso) {
    const node = el("time", "", when(iso));
    if (iso) {
      node.dateTime = iso;
      node.title = absolute.format(new Date(iso));
    }
    return node;
  }

  function tone(seed) {
    let hash = 0;
    for (const char of seed || "?") hash = (hash * 31 + char.codePointAt(0)) >>> 0;
    return `tone-${hash % 8}`;
  }

  function initials(name) {
    const words = (name || "").trim().split(/\s+/).filter(Boolean);
    if (!words.length) return "";
    return (words[0][0] + (words.length > 1 ? words[words.length - 1][0] : "")).toUpperCase();
  }

  // A round avatar: the picture when it loads, else the initials (or a silhouette) on a tone.
  function avatar(url, name, size) {
    const node = el("span", `avatar ${size || ""} ${tone(name || url)}`);
    node.setAttribute("aria-hidden", "true");
    const letters = size === "small" ? initials(name).slice(0, 1) : initials(name);
    if (letters) node.textContent = letters;
    else node.classList.add("avatar-anonymous");
    if (url && /^https?:\/\//i.test(url)) {
      const image = el("img");
      image.alt = "";
      image.referrerPolicy = "no-referrer";
      image.addEventListener("load", () => node.classList.add("avatar-loaded"));
      image.addEventListener("error", () => image.remove());
      image.src = url;
      node.append(image);
    }
    return node;
  }

  function clusterTitle(cluster) {
    if (cluster.label) return cluster.label;
    const preview = (cluster.preview_text || "").trim();
    return preview ? (preview.length > 60 ? `${preview.slice(0, 57)}…` : preview) : "Untitled cluster";
  }

  // ---- sign-in, sign-out and the creator ---------------------------------------------------

  async function signIn(event) {
    event.preventDefault();
    clearError();
    const input = $("api-key");
    const key = input.value.trim();
    if (!key) return;
    state.key = key;
    try {
      await api("/v1/clusters?limit=1");
    } catch (error) {
      state.key = null;
      showError(error);
      input.focus();
      input.select();
      return;
    }
    sessionStorage.setItem(KEY_STORE, key);
    input.value = "";
    announce("Signed in.");
    await showWorkspace();
  }

  function signOut(reason) {
    state.generation += 1;
    stopPolling();
    sessionStorage.removeItem(KEY_STORE);
    state.key = null;
    state.selected = null;
    $("clusters").replaceChildren();
    $("messages").replaceChildren();
    $("workspace").hidden = true;
    $("creator-form").hidden = true;
    $("sign-out").hidden = true;
    $("sign-in").hidden = false;
    announce(typeof reason === "string" ? reason : "Signed out.");
    $("api-key").focus();
  }

  async function showWorkspace() {
    $("sign-in").hidden = true;
    $("creator-form").hidden = false;
    $("sign-out").hidden = false;
    $("workspace").hidden = false;
    const creators = await suggestCreators();
    if (!state.creator && creators.length) state.creator = creators[0];
    if (state.creator) {
      $("creator").value = state.creator;
      await openCreator(state.creator);
    } else {
      $("list-empty").textContent = "No clusters yet. Type a creator id above to open their inbox.";
      $("list-empty").hidden = false;
      $("creator").focus();
    }
  }

  // Creators are read off the tenant's clusters, the most recent first.
  async function suggestCreators() {
    const creators = [];
    let cursor = null;
    try {
      for (let page = 0; page < CREATOR_SCAN_PAGES; page += 1) {
        const answer = await api(`/v1/clusters?${query({ limit: 100, cursor })}`);
        for (const cluster of answer.clusters) {
          if (!creators.includes(cluster.creator_id)) creators.push(cluster.creator_id);
        }
        cursor = answer.next_cursor;
        if (!cursor) break;
      }
    } catch (error) {
      showError(error);
    }
    $("creator-options").replaceChildren(...creators.map((id) => {
      const option = el("option");
      option.value = id;
      return option;
    }));
    return creators;
  }

  function query(params) {
    const search = new URLSearchParams();
    for (const [name, value] of Object.entries(params)) {
      if (value !== null && value !== undefined && value !== "") search.set(name, value);
    }
    return search.toString();
  }

  async function chooseCreator(event) {
    event.preventDefault();
    const creator = $("creator").value.trim();
    if (creator) await openCreator(creator);
  }

  async function openCreator(creator) {
    clearError();
    state.creator = creator;
    sessionStorage.setItem(CREATOR_STORE, creator);
    $("creator-name").textContent = creator;
    document.title = `${creator} · Inbox · Chorus`;
    showPlaceholder();
    await loadClusters(true);
  }

  // ---- the list of clusters ----------------------------------------------------------------

  async function chooseTab(status) {
    if (state.status === status) return;
    state.status = status;
    $("tab-open").setAttribute("aria-pressed", String(status === "open"));
    $("tab-actioned").setAttribute("aria-pressed", String(status === "actioned"));
    showPlaceholder();
    await loadClusters(true);
  }

  async function loadClusters(fresh) {
    if (fresh) {
      state.generation += 1;
      state.clusterCursor = null;
      $("clusters").replaceChildren();
    }
    const generation = state.generation;
    const button = $("more-clusters");
    button.disabled = true;
    let answer;
    try {
      answer = await api(`/v1/clusters?${query({
        creator_id: state.creator, status: state.status, limit: CLUSTER_PAGE, cursor: state.clusterCursor,
      })}`);
    } catch (error) {
      showError(error);
      return;
    } finally {
      button.disabled = false;
    }
    if (generation !== state.generation) return;
    state.clusterCursor = answer.next_cursor || null;
    $("clusters").append(...answer.clusters.map(clusterItem));
    button.hidden = !state.clusterCursor;
    const shown = $("clusters").children.length;
    const what = state.status === "open" ? "open" : "answered";
    $("list-empty").hidden = shown > 0;
    $("list-empty").textContent = state.status === "open"
      ? "Nothing waiting: every question has an answer."
      : "No answered clusters yet.";
    announce(`${plural(shown, `${what} cluster`, `${what} clusters`)} for ${state.creator}${state.clusterCursor ? ", more to load" : ""}.`);
  }

  function clusterItem(cluster) {
    const item = el("li");
    const button = el("button", "cluster");
    button.type = "button";
    button.dataset.clusterId = cluster.id;
    if (state.selected && state.selected.id === cluster.id) button.setAttribute("aria-current", "true");

    const faces = el("span", "faces");
    const urls = cluster.visitor_avatar_urls || [];
    const first = cluster.representative_visitor;
    if (urls.length) {
      urls.forEach((url) => faces.append(avatar(url, first && first.avatar_url === url ? first.name : "", "small")));
    } else {
      faces.append(avatar(null, first ? first.name : "", "small"));
    }
    if (cluster.channel_count > urls.length && urls.length) {
      faces.append(el("span", "faces-more", `+${cluster.channel_count - urls.length}`));
    }

    const head = el("span", "cluster-head");
    const count = el("span", "count", cluster.size);
    count.title = plural(cluster.size, "message", "messages");
    head.append(el("span", "cluster-label", clusterTitle(cluster)), count);
    const meta = el("span", "cluster-meta");
    // The badge holds the number of messages; the line under the preview says how many channels.
    meta.append(el("span", "", plural(cluster.channel_count, "channel", "channels")));
    if (cluster.status === "actioned") {
      const answered = el("span", "", "answered ");
      answered.append(timeElement(cluster.actioned_at));
      meta.append(answered);
    } else {
      const latest = el("span");
      latest.append(timeElement(cluster.updated_at));
      meta.append(latest);
    }
    const foot = el("span", "cluster-foot");
    foot.append(faces, meta);
    button.append(head, el("span", "preview", cluster.preview_text || ""), foot);
    const counts = `${plural(cluster.size, "message", "messages")} from ${plural(cluster.channel_count, "channel", "channels")}`;
    button.setAttribute("aria-label", `${clusterTitle(cluster)}: ${counts}. ${cluster.preview_text || ""}`.trim());
    button.addEventListener("click", () => openCluster(cluster.id));
    item.append(button);
    return item;
  }

  function markSelected(id) {
    for (const button of $("clusters").querySelectorAll("button.cluster")) {
      if (button.dataset.clusterId === id) button.setAttribute("aria-current", "true");
      else button.removeAttribute("aria-current");
    }
  }

  // ---- one cluster -------------------------------------------------------------------------

  function showPlaceholder() {
    stopPolling();
    state.selected = null;
    $("detail-body").hidden = true;
    $("detail-placeholder").hidden = false;
  }

  async function openCluster(id) {
    clearError();
    stopPolling();
    state.generation += 1;
    const generation = state.generation;
    let cluster;
    try {
      cluster = await api(`/v1/clusters/${encodeURIComponent(id)}?${query({ limit: MESSAGE_PAGE })}`);
    } catch (error) {
      showError(error);
      return;
    }
    if (generation !== state.generation) return;
    state.selected = cluster;
    state.messageCursor = cluster.next_cursor || null;
    state.channelNames = new Map();
    markSelected(id);
    $("messages").replaceChildren();
    appendMessages(cluster.messages || []);
    renderCluster(cluster);
    $("reply-text").value = "";
    $("detail-placeholder").hidden = true;
    $("detail-body").hidden = false;
    $("detail-title").focus();
    announce(`${clusterTitle(cluster)}: ${plural(cluster.size, "message", "messages")}.`);
    if (needsPolling(cluster)) startPolling(cluster.id);
  }

  function renderCluster(cluster) {
    $("detail-title").textContent = clusterTitle(cluster);
    const parts = [
      plural(cluster.size, "message", "messages"),
      plural(cluster.channel_count, "channel", "channels"),
      `started ${when(cluster.created_at)}`,
    ];
    $("detail-meta").textContent = parts.join(" · ");
    const open = cluster.status === "open";
    $("reply-form").hidden = !open;
    $("reply-label").textContent = `Reply to ${plural(cluster.channel_count, "fan", "fans")} at once`;
    $("reply-send").textContent = `Send to ${plural(cluster.channel_count, "channel", "channels")}`;
    $("delivery").hidden = open;
    if (!open) renderDelivery(cluster);
  }

  function appendMessages(messages) {
    for (const message of messages) {
      const visitor = message.visitor || {};
      if (visitor.name) state.channelNames.set(message.channel_cid, visitor.name);
      const item = el("li", "message");
      const head = el("div", "message-head");
      head.append(el("span", "message-name", visitor.name || visitor.id || "A fan"), timeElement(message.created_at));
      const body = el("div", "message-body");
      body.append(head, el("p", "message-text", message.text));
      item.append(avatar(visitor.avatar_url, visitor.name || visitor.id, ""), body);
      $("messages").append(item);
    }
    $("more-messages").hidden = !state.messageCursor;
  }

  async function loadMoreMessages() {
    const cluster = state.selected;
    if (!cluster || !state.messageCursor) return;
    const generation = state.generation;
    $("more-messages").disabled = true;
    try {
      const answer = await api(`/v1/clusters/${encodeURIComponent(cluster.id)}?${query({
        limit: MESSAGE_PAGE, cursor: state.messageCursor,
      })}`);
      if (generation !== state.generation) return;
      state.messageCursor = answer.next_cursor || null;
      appendMessages(answer.messages || []);
      announce(`${$("messages").children.length} of ${plural(cluster.size, "message", "messages")} shown.`);
    } catch (error) {
      showError(error);
    } finally {
      $("more-messages").disabled = false;
    }
  }

  // ---- the reply and its delivery ----------------------------------------------------------

  async function sendReply(event) {
    event.preventDefault();
    const cluster = state.selected;
    const text = $("reply-text").value;
    if (!cluster || !text.trim()) {
      showError("Write a reply first.");
      $("reply-text").focus();
      return;
    }
    clearError();
    const button = $("reply-send");
    button.disabled = true;
    announce("Sending your reply…");
    try {
      const answer = await api(`/v1/clusters/${encodeURIComponent(cluster.id)}/action`, {
        method: "POST",
        body: JSON.stringify({ response_text: text }),
      });
      announce(`Reply queued for ${plural(answer.replies, "channel", "channels")}.`);
    } catch (error) {
      showError(error);
      if (error.status !== 409) return;
    } finally {
      button.disabled = false;
    }
    // Open or not, the cluster now lives under "Answered": drop it from the open list.
    const row = $("clusters").querySelector(`button.cluster[data-cluster-id="${CSS.escape(cluster.id)}"]`);
    if (row && state.status === "open") row.closest("li").remove();
    await refreshSelected();
    startPolling(cluster.id);
    $("delivery-title").focus();
  }

  function needsPolling(cluster) {
    if (cluster.status !== "actioned") return false;
    const replies = cluster.replies || [];
    return replies.length === 0 || replies.some((reply) => reply.status === "pending");
  }

  async function refreshSelected() {
    const cluster = state.selected;
    if (!cluster) return null;
    const generation = state.generation;
    const fresh = await api(`/v1/clusters/${encodeURIComponent(cluster.id)}?${query({ limit: 1 })}`);
    if (generation !== state.generation || !state.selected || state.selected.id !== fresh.id) return null;
    // The messages on screen stay as they were paged; only the cluster's own fields change.
    state.selected = { ...fresh, messages: cluster.messages };
    renderCluster(state.selected);
    return state.selected;
  }

  function startPolling(id) {
    stopPolling();
    const started = Date.now();
    const tick = async () => {
      state.poll = null;
      if (!state.selected || state.selected.id !== id) return;
      let cluster;
      try {
        cluster = await refreshSelected();
      } catch (error) {
        showError(error);
      }
      if (!state.selected || state.selected.id !== id) return;
      if (cluster && !needsPolling(cluster)) {
        announce($("delivery-summary").textContent);
        return;
      }
      if (Date.now() - started > POLL_GIVE_UP_MS) {
        announce("Delivery is still in progress; open the cluster again later to see where it stands.");
        return;
      }
      state.poll = setTimeout(tick, POLL_MS);
    };
    state.poll = setTimeout(tick, POLL_MS);
  }

  function stopPolling() {
    if (state.poll !== null) clearTimeout(state.poll);
    state.poll = null;
  }

  const STATUS_WORDS = { pending: "Sending", sent: "Sent", failed: "Failed" };

  function renderDelivery(cluster) {
    $("delivery-text").textContent = cluster.response_text || "";
    const replies = cluster.replies || [];
    const count = (status) => replies.filter((reply) => reply.status === status).length;
    const sent = count("sent");
    const failed = count("failed");
    const pending = count("pending");
    let summary;
    if (!replies.length) summary = "Queued for delivery…";
    else if (pending) summary = `Delivering: ${sent} of ${plural(replies.length, "channel", "channels")} sent so far.`;
    else if (failed) summary = `Sent to ${sent} of ${plural(replies.length, "channel", "channels")}; ${failed} failed.`;
    else summary = `Delivered to all ${plural(replies.length, "channel", "channels")}.`;
    $("delivery-summary").textContent = summary;
    $("delivery-list").replaceChildren(...replies.map((reply) => {
      const item = el("li", `delivery-item delivery-${reply.status}`);
      item.dataset.channelCid = reply.channel_cid;
      item.dataset.status = reply.status;
      const who = el("div", "delivery-who");
      const name = state.channelNames.get(reply.channel_cid);
      who.append(el("span", name ? "delivery-name" : "delivery-name delivery-cid", name || reply.channel_cid));
      if (name) who.append(el("span", "delivery-cid", reply.channel_cid));
      const detail = el("div", "delivery-detail");
      detail.append(el("span", `badge badge-${reply.status}`, STATUS_WORDS[reply.status] || reply.status));
      if (reply.status === "sent" && reply.sent_at) detail.append(timeElement(reply.sent_at));
      if (reply.attempts > 1) detail.append(el("span", "muted", `${reply.attempts} attempts`));
      if (reply.reason) detail.append(el("span", "delivery-reason", reply.reason));
      item.append(who, detail);
      return item;
    }));
  }

  // ---- wiring ------------------------------------------------------------------------------

  function start() {
    $("sign-in-form").addEventListener("submit", signIn);
    $("sign-out").addEventListener("click", () => signOut());
    $("creator-form").addEventListener("submit", chooseCreator);
    $("tab-open").addEventListener("click", () => chooseTab("open"));
    $("tab-actioned").addEventListener("click", () => chooseTab("actioned"));
    $("more-clusters").addEventListener("click", () => loadClusters(false));
    $("more-messages").addEventListener("click", loadMoreMessages);
    $("reply-form").addEventListener("submit", sendReply);
    $("error-dismiss").addEventListener("click", clearError);
    if (state.key) {
      showWorkspace();
    } else {
      $("sign-in").hidden = false;
      $("api-key").focus();
    }
  }

  start();
})();

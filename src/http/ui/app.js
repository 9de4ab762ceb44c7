// jitmux web page (src/http/ui/mod.rs renders it; no framework):
// - plays a finished recording from its signed full-MP4 URL (duration known at once, seekable
//   through Range) and a live broadcast from its signed quasi-stream URL (the live tail);
// - tells the user up front when this browser cannot decode a recording's codec;
// - in and out points on a finished recording: wall-clock times (the card's data-start-ms plus
//   the player's time), a clip download link (/v1/clips/CAM/START_END.mp4) and a one-item
//   export to a ZIP (POST /v1/exports);
// - the Exports section: the user's jobs (GET /v1/exports), polled every 2 s while one is
//   queued or running, with cancel (DELETE) and the finished ZIP's download link.
// Unsafe requests carry the session's CSRF token (X-CSRF-Token).
"use strict";
(function () {
  const csrf = document.querySelector('meta[name="csrf"]').content;
  const $ = (id) => document.getElementById(id);
  const player = $("player"), video = $("video"), now = $("now"), error = $("player-error");
  const clip = $("clip"), clipRange = $("clip-range"), clipDownload = $("clip-download");
  const clipExport = $("clip-export"), clipAccuracy = $("clip-accuracy"), clipStatus = $("clip-status");

  function cannotPlay(codecs) {
    return codecs !== "" && video.canPlayType('video/mp4; codecs="' + codecs + '"') === "";
  }

  function send(method, url, body) {
    const headers = { "X-CSRF-Token": csrf };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    return fetch(url, { method, credentials: "same-origin", headers,
      body: body === undefined ? undefined : JSON.stringify(body) });
  }

  // The clip being cut: the playing recording and its in/out points (unix ms).
  let cut = null;

  async function play(card) {
    error.textContent = "";
    const live = card.dataset.live === "true";
    const r = await send("POST", "/v1/share",
      { path: card.dataset.path, modes: [live ? "stream" : "file"], expires_s: 6 * 3600 });
    if (!r.ok) {
      player.hidden = false;
      error.textContent = "Cannot play: " + (await r.text()).trim();
      return;
    }
    const link = (await r.json()).path;
    now.textContent = (live ? "Live: " : "") + card.dataset.title;
    player.hidden = false;
    document.body.dataset.playing = card.dataset.path;
    video.src = live ? link + "&mode=stream" : link;
    // In and out points on finished recordings, whose player time is the file's own timeline.
    const seg = card.dataset.path.split("/");
    cut = live ? null : { camera: seg[1], start: parseInt(card.dataset.startMs, 10), in: null, out: null };
    clip.hidden = live;
    clipStatus.textContent = "";
    showCut();
    player.scrollIntoView({ block: "nearest" });
    try {
      await video.play();
    } catch (e) {
      // Autoplay refused: the controls are there to start it.
    }
  }

  video.addEventListener("error", function () {
    const e = video.error;
    error.textContent = "Cannot play: " + ((e && e.message) || "the browser refused the file");
  });

  // RFC 3339 UTC with milliseconds, as the clip URL wants: 2026-03-01T14:02:00.000Z.
  const iso = (ms) => new Date(ms).toISOString();
  const clock = (ms) => iso(ms).slice(11, 23);

  // The chosen range, and the clip link and export button when it is a range.
  function showCut() {
    clipDownload.removeAttribute("href");
    clipExport.disabled = true;
    if (!cut) return;
    const a = cut.in, b = cut.out;
    if (a === null && b === null) {
      clipRange.textContent = "Set in and out points to cut a clip.";
      return;
    }
    const day = iso(a !== null ? a : b).slice(0, 10);
    clipRange.textContent = day + " " + (a !== null ? clock(a) : "…") + " – " + (b !== null ? clock(b) : "…") + " UTC";
    if (a === null || b === null) return;
    if (b <= a) {
      clipRange.textContent += ": the out point must come after the in point.";
      return;
    }
    clipRange.textContent += " (" + ((b - a) / 1000).toFixed(1) + " s)";
    clipDownload.href = "/v1/clips/" + cut.camera + "/" + iso(a) + "_" + iso(b) + ".mp4?accuracy=" +
      clipAccuracy.value + "&download=1";
    clipExport.disabled = false;
  }

  function setPoint(which) {
    if (!cut) return;
    cut[which] = cut.start + Math.round(video.currentTime * 1000);
    showCut();
  }
  $("set-in").addEventListener("click", () => setPoint("in"));
  $("set-out").addEventListener("click", () => setPoint("out"));
  clipAccuracy.addEventListener("change", showCut);

  clipExport.addEventListener("click", async function () {
    if (!cut || cut.in === null || cut.out === null) return;
    clipExport.disabled = true;
    const item = { clip: { camera: decodeURIComponent(cut.camera), start: iso(cut.in), end: iso(cut.out),
      accuracy: clipAccuracy.value, gaps: "keep" } };
    const r = await send("POST", "/v1/exports", { items: [item], destination: { zip: {} } });
    clipStatus.textContent = r.ok ? "Export started: see Exports below." : "Export refused: " + (await r.text()).trim();
    clipExport.disabled = false;
    if (r.ok) refreshExports();
  });

  // The Exports section: hidden while there are no jobs (or the server has no exports).
  const exportsSection = $("exports"), exportList = $("export-list");
  let pollTimer = null;

  function humanBytes(n) {
    if (n >= 1e9) return (n / 1e9).toFixed(2) + " GB";
    if (n >= 1e6) return (n / 1e6).toFixed(1) + " MB";
    return Math.ceil(n / 1e3) + " kB";
  }

  function jobItem(job) {
    const li = document.createElement("li");
    li.dataset.id = job.id;
    li.dataset.state = job.state;
    const title = document.createElement("b");
    title.textContent = "Export " + job.id;
    const state = document.createElement("span");
    state.className = "state " + job.state;
    state.textContent = job.state;
    const progress = document.createElement("span");
    progress.className = "dim progress";
    progress.textContent = (job.items_done || 0) + " of " + (job.items_total || 0) + " items · " +
      humanBytes(job.bytes_done || 0);
    li.append(title, " ", state, " ", progress);
    if (job.state === "queued" || job.state === "running") {
      const cancel = document.createElement("button");
      cancel.type = "button";
      cancel.className = "cancel";
      cancel.textContent = "Cancel";
      cancel.addEventListener("click", async function () {
        cancel.disabled = true;
        await send("DELETE", "/v1/exports/" + encodeURIComponent(job.id));
        refreshExports();
      });
      li.append(" ", cancel);
    }
    if (job.state === "succeeded" && job.download) {
      const a = document.createElement("a");
      a.className = "download";
      a.href = job.download;
      a.setAttribute("download", "");
      a.textContent = "Download ZIP";
      li.append(" ", a);
    }
    for (const e of job.errors || []) {
      const p = document.createElement("p");
      p.className = "error";
      p.textContent = "Item " + e.item + ": " + e.error;
      li.append(p);
    }
    return li;
  }

  let generation = 0;
  async function refreshExports() {
    clearTimeout(pollTimer);
    pollTimer = null;
    const mine = ++generation;
    let jobs;
    try {
      const r = await fetch("/v1/exports", { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (!r.ok) return;
      jobs = (await r.json()).exports || [];
    } catch (e) {
      return;
    }
    if (mine !== generation) return; // a newer refresh (after a cancel or an export) shows the list
    exportList.replaceChildren(...jobs.map(jobItem));
    exportsSection.hidden = jobs.length === 0;
    if (jobs.some((j) => j.state === "queued" || j.state === "running")) pollTimer = setTimeout(refreshExports, 2000);
  }
  refreshExports();

  // A recording without a thumbnail (interlaced or undecodable video) gets a plain tile.
  function noPreview(img) {
    const tile = document.createElement("div");
    tile.className = "thumb none";
    tile.textContent = "no preview";
    img.replaceWith(tile);
  }
  for (const img of document.querySelectorAll("img.thumb")) {
    if (img.complete && img.naturalWidth === 0) noPreview(img);
    else img.addEventListener("error", function () { noPreview(img); });
  }

  for (const card of document.querySelectorAll("li.card")) {
    const button = card.querySelector("button.play");
    const codecs = card.dataset.codecs || "";
    if (cannotPlay(codecs)) {
      button.disabled = true;
      const note = card.querySelector(".note");
      note.hidden = false;
      note.textContent = /^(hev1|hvc1)/.test(codecs)
        ? "H.265 (HEVC): this browser cannot decode it. Download the MP4 and open it in a player that can (VLC, mpv, Safari)."
        : "This browser cannot decode " + codecs + ". Download the MP4 instead.";
      continue;
    }
    button.addEventListener("click", function () {
      play(card);
    });
  }
})();

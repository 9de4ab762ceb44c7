// jitmux web page (src/http/ui/mod.rs renders it; no framework):
// - plays a finished recording from its signed full-MP4 URL (duration known at once, seekable
//   through Range) and a live broadcast from its signed quasi-stream URL (the live tail);
// - tells the user up front when this browser cannot decode a recording's codec;
// - in and out points on a finished recording: wall-clock times (the card's data-start-ms plus
//   the player's time) and a clip download link (/v1/clips/CAM/START_END.mp4).
// Unsafe requests carry the session's CSRF token (X-CSRF-Token).
"use strict";
(function () {
  const csrf = document.querySelector('meta[name="csrf"]').content;
  const $ = (id) => document.getElementById(id);
  const player = $("player"), video = $("video"), now = $("now"), error = $("player-error");
  const clip = $("clip"), clipRange = $("clip-range"), clipDownload = $("clip-download");
  const clipAccuracy = $("clip-accuracy"), clipStatus = $("clip-status");

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

  // The chosen range, and the clip link when it is a range.
  function showCut() {
    clipDownload.removeAttribute("href");
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
  }

  function setPoint(which) {
    if (!cut) return;
    cut[which] = cut.start + Math.round(video.currentTime * 1000);
    showCut();
  }
  $("set-in").addEventListener("click", () => setPoint("in"));
  $("set-out").addEventListener("click", () => setPoint("out"));
  clipAccuracy.addEventListener("change", showCut);

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

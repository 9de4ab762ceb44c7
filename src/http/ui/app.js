// jitmux web page: plays recordings and live broadcasts through signed quasi-stream URLs, and
// tells the user up front when this browser cannot decode a recording's codec.
"use strict";
(function () {
  const csrf = document.querySelector('meta[name="csrf"]').content;
  const player = document.getElementById("player");
  const video = document.getElementById("video");
  const now = document.getElementById("now");
  const error = document.getElementById("player-error");

  function cannotPlay(codecs) {
    return codecs !== "" && video.canPlayType('video/mp4; codecs="' + codecs + '"') === "";
  }

  async function play(card) {
    error.textContent = "";
    const r = await fetch("/v1/share", {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify({ path: card.dataset.path, modes: ["stream"], expires_s: 6 * 3600 }),
    });
    if (!r.ok) {
      player.hidden = false;
      error.textContent = "Cannot play: " + (await r.text()).trim();
      return;
    }
    const link = (await r.json()).path;
    now.textContent = (card.dataset.live === "true" ? "Live: " : "") + card.dataset.title;
    player.hidden = false;
    document.body.dataset.playing = card.dataset.path;
    video.src = link + "&mode=stream";
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

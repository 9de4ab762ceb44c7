#!/usr/bin/env node
// Headless Chromium plays a quasi-stream (fragmented MP4 sent with chunked transfer) to the end
// and reports whether playback started before the download finished. The page's network is
// throttled (CDP Network.emulateNetworkConditions) so that the download takes seconds.
//   node stream_play.js URL [--header "Name: value"] [--kbps 4000] [--rate 4] [--timeout 120]
// Prints one JSON line; exit 0 when it played to 'ended', decoded video and started playing
// before the response body was complete.
const { chromium } = require('playwright-core');
const fs = require('fs'), os = require('os'), path = require('path');

const args = process.argv.slice(2);
const url = args[0];
const opt = (k, d) => { const i = args.indexOf('--' + k); return i >= 0 ? parseFloat(args[i + 1]) : d; };
const kbps = opt('kbps', 4000), rate = opt('rate', 4), timeoutS = opt('timeout', 120);
const extraHTTPHeaders = {};
args.forEach((a, i) => { if (a === '--header') { const [k, ...v] = args[i + 1].split(':'); extraHTTPHeaders[k.trim()] = v.join(':').trim(); } });

(async () => {
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'chromium-'));
  const ctx = await chromium.launchPersistentContext(userDataDir, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium', headless: true, extraHTTPHeaders,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
           '--disable-component-update', '--disable-sync', '--autoplay-policy=no-user-gesture-required'],
  });
  const page = await ctx.newPage();
  const cdp = await ctx.newCDPSession(page);
  await cdp.send('Network.enable');
  await cdp.send('Network.emulateNetworkConditions',
    { offline: false, latency: 0, downloadThroughput: kbps * 1000 / 8, uploadThroughput: 10e6 });
  const t0 = Date.now();
  let bodyDoneMs = null;
  cdp.on('Network.loadingFinished', () => { if (bodyDoneMs === null) bodyDoneMs = Date.now() - t0; });
  await page.setContent('<video id="v" muted playsinline autoplay></video>');
  const res = await page.evaluate(async ({ url, rate, timeoutS }) => {
    const v = document.getElementById('v');
    const t0 = performance.now();
    const out = {};
    const ev = (name) => new Promise((ok, fail) => {
      const t = setTimeout(() => fail(new Error('timeout waiting for ' + name)), timeoutS * 1000);
      v.addEventListener(name, () => { clearTimeout(t); ok(); }, { once: true });
      v.addEventListener('error', () => { clearTimeout(t); fail(new Error('media error ' + (v.error && v.error.message))); }, { once: true });
    });
    try {
      const playing = ev('playing');
      v.src = url;
      v.playbackRate = rate;
      await playing;
      out.playingMs = performance.now() - t0;
      out.videoWidth = v.videoWidth;
      await ev('ended');
      out.ended = true;
      out.endedMs = performance.now() - t0;
    } catch (e) { out.error = String(e.message || e); }
    out.currentTime = v.currentTime;
    const q = v.getVideoPlaybackQuality();
    out.decodedFrames = q.totalVideoFrames;
    return out;
  }, { url, rate, timeoutS });
  res.bodyDoneMs = bodyDoneMs;
  res.startedBeforeDownloadEnd = res.playingMs !== undefined && (bodyDoneMs === null || res.playingMs < bodyDoneMs);
  res.ok = !!(res.ended && !res.error && res.videoWidth > 0 && res.startedBeforeDownloadEnd);
  console.log(JSON.stringify(res));
  await ctx.close();
  process.exit(res.ok ? 0 : 1);
})().catch(e => { console.error(e); process.exit(2); });

#!/usr/bin/env node
// Drives the jitmux web page in headless Chromium as a camera owner would: signs in with a token,
// opens a day of recordings and waits for every thumbnail, plays one finished recording in the
// page from its full MP4 (its whole duration known at loadedmetadata, a seek near the end plays
// to the end), sets in and out points and reads the clip link they make, checks that the same
// recording's quasi-stream also tells its duration up front, checks how an H.265 recording is
// offered, then watches a camera's live broadcast for a few seconds. With --clips the clip link
// downloads an MP4, with --zips the day's ZIP link downloads, with --exports an exported clip
// runs to a ZIP in the Exports section. Saves screenshots along the way.
//   node web_ui.js BASE TOKEN --day /CAM/DAY/ --hevc-day /CAM/DAY/ --live CAM --out DIR
//        [--rate 4] [--watch 6] [--timeout 120] [--clips] [--zips] [--exports]
// Prints one JSON line; exits 0 when every step held.
const { chromium } = require('playwright-core');
const fs = require('fs'), os = require('os'), path = require('path');

const [base, token, ...rest] = process.argv.slice(2);
const opt = (k, d) => { const i = rest.indexOf('--' + k); return i >= 0 ? rest[i + 1] : d; };
const day = opt('day'), hevcDay = opt('hevc-day'), liveCam = opt('live'), outDir = opt('out', '.');
const clips = rest.includes('--clips'), zips = rest.includes('--zips'), exportsOn = rest.includes('--exports');
const rate = parseFloat(opt('rate', '4')), watchS = parseFloat(opt('watch', '6')), timeoutMs = parseFloat(opt('timeout', '120')) * 1000;

const report = { steps: [] };
function step(name, data) { report.steps.push(Object.assign({ step: name }, data || {})); }
function check(cond, what) { if (!cond) throw new Error('check failed: ' + what); }

(async () => {
  fs.mkdirSync(outDir, { recursive: true });
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'chromium-'));
  const ctx = await chromium.launchPersistentContext(userDataDir, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium', headless: true,
    viewport: { width: 1280, height: 900 },
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
           '--disable-component-update', '--disable-sync', '--autoplay-policy=no-user-gesture-required'],
  });
  ctx.setDefaultTimeout(timeoutMs);
  const page = await ctx.newPage();
  const consoleErrors = [];
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
  try {
    // 1. Sign in.
    await page.goto(base + '/');
    await page.fill('input[name="token"]', token);
    await Promise.all([page.waitForURL(base + '/ui/'), page.click('button[type="submit"]')]);
    const cookies = await ctx.cookies(base);
    const session = cookies.find((c) => c.name === 'jitmux_session');
    check(session && session.httpOnly && session.sameSite === 'Strict', 'session cookie is HttpOnly, SameSite=Strict');
    check(!(await page.evaluate(() => document.cookie)).includes('jitmux_session'), 'script cannot read the session');
    step('signed in', { url: page.url(), cookie: { httpOnly: session.httpOnly, sameSite: session.sameSite } });

    // 2. A day of recordings: every thumbnail loads.
    await page.goto(base + '/ui' + day);
    const cards = await page.locator('li.card').count();
    check(cards > 0, 'recordings listed');
    await page.waitForFunction(() => [...document.querySelectorAll('img.thumb')].every((i) => i.complete && i.naturalWidth > 0));
    const thumbs = await page.$$eval('img.thumb', (imgs) => imgs.map((i) => [i.naturalWidth, i.naturalHeight]));
    check(thumbs.length === cards, 'a thumbnail per recording');
    // The download link works with the session alone and gives the whole file.
    const href = await page.locator('li.card a.download').first().getAttribute('href');
    const dl = await page.request.get(base + href);
    const len = parseInt(dl.headers()['content-length'], 10);
    check(dl.status() === 200 && dl.headers()['content-type'] === 'video/mp4' && (await dl.body()).length === len,
      'download link gives the full MP4');
    // The day as one ZIP: a plain link.
    const zipHref = await page.locator('p.zip a').getAttribute('href');
    check(zipHref === '/v1/files' + day.replace(/\/$/, '') + '.zip', 'day ZIP link ' + zipHref);
    const zip = { href: zipHref };
    if (zips) {
      const z = await page.request.get(base + zipHref);
      const body = await z.body();
      Object.assign(zip, { status: z.status(), type: z.headers()['content-type'], len: body.length });
      check(z.status() === 200 && body.subarray(0, 4).toString('latin1') === 'PK\x03\x04', 'day ZIP downloads');
    }
    step('thumbnails', { cards, thumbs, download: { href, status: dl.status(), len }, zip });

    // 3. Play the first (finished) recording in the page: its full MP4, whose duration is the
    // recording's as soon as metadata loads; set in and out points; a seek near the end plays on
    // to the end.
    const first = page.locator('li.card').first();
    const filePath = await first.getAttribute('data-path');
    const listing = await (await page.request.get(base + '/v1/files' + day, { headers: { Accept: 'application/json' } })).json();
    const entry = listing.entries.find((e) => filePath.endsWith('/' + e.name));
    check(entry && entry.live === false, 'the first card is a finished recording');
    const meta = page.evaluate(() => new Promise((ok, fail) => {
      const v = document.getElementById('video');
      v.addEventListener('loadedmetadata', () => ok({ duration: v.duration, src: v.currentSrc }), { once: true });
      v.addEventListener('error', () => fail(new Error('media error ' + (v.error && v.error.message))), { once: true });
    }));
    await first.locator('button.play').click();
    const loaded = await meta;
    check(/[?&]sig=/.test(loaded.src) && !/[?&]mode=stream/.test(loaded.src), 'played through a signed full-MP4 URL');
    check(Math.abs(loaded.duration - entry.duration_s) < 0.1,
      `duration at loadedmetadata ${loaded.duration} is the recording's ${entry.duration_s}`);
    await page.waitForFunction(() => document.getElementById('video').currentTime > 0.5);
    check(await page.locator('#clip').isVisible(), 'in/out controls shown for a finished recording');
    // Points at exact player times: paused, seeked, then "Set in" / "Set out".
    const seekTo = (t) => page.evaluate((t) => new Promise((ok) => {
      const v = document.getElementById('video');
      v.pause();
      v.addEventListener('seeked', () => ok(v.currentTime), { once: true });
      v.currentTime = t;
    }), t);
    const inT = await seekTo(1.25);
    await page.click('#set-in');
    const nearEnd = Math.max(loaded.duration - 1.5, 2);
    const outT = await seekTo(nearEnd);
    check(Math.abs(outT - nearEnd) < 0.05, `seek near the end landed at ${outT}`);
    await page.click('#set-out');
    const startMs = parseInt(await first.getAttribute('data-start-ms'), 10);
    const iso = (t) => new Date(startMs + Math.round(t * 1000)).toISOString();
    const camera = filePath.split('/')[1];
    const wantClip = `/v1/clips/${camera}/${iso(inT)}_${iso(outT)}.mp4?accuracy=frame&download=1`;
    const clipHref = await page.locator('#clip-download').getAttribute('href');
    check(clipHref === wantClip, `clip link ${clipHref} is ${wantClip}`);
    const rangeText = await page.locator('#clip-range').textContent();
    check(rangeText.includes(iso(inT).slice(11, 23)) && rangeText.includes(iso(outT).slice(11, 23)),
      'the range shows both wall-clock times: ' + rangeText);
    await page.selectOption('#clip-accuracy', 'keyframe');
    const keyHref = await page.locator('#clip-download').getAttribute('href');
    check(keyHref === wantClip.replace('accuracy=frame', 'accuracy=keyframe'), 'accuracy select: ' + keyHref);
    await page.selectOption('#clip-accuracy', 'frame');
    // From near the end, playback runs on to the end.
    const ended = page.evaluate((rate) => new Promise((ok, fail) => {
      const v = document.getElementById('video');
      v.playbackRate = rate;
      v.addEventListener('ended', () => ok({ currentTime: v.currentTime, duration: v.duration,
        width: v.videoWidth, frames: v.getVideoPlaybackQuality().totalVideoFrames, src: v.currentSrc }), { once: true });
      v.addEventListener('error', () => fail(new Error('media error ' + (v.error && v.error.message))), { once: true });
      v.play().catch(fail);
    }), rate);
    await page.screenshot({ path: path.join(outDir, 'recordings.png') });
    const played = await ended;
    check(played.frames > 0 && played.width > 0, 'decoded video frames');
    check(Math.abs(played.currentTime - entry.duration_s) < 0.2, `ended at ${played.currentTime}`);
    const clipReport = { href: clipHref, inT, outT, range: rangeText };
    if (clips) {
      const c = await page.request.get(base + clipHref);
      const body = await c.body();
      Object.assign(clipReport, { status: c.status(), type: c.headers()['content-type'],
        disposition: c.headers()['content-disposition'], len: body.length });
      check(c.status() === 200 && c.headers()['content-type'] === 'video/mp4' &&
        /^attachment/.test(c.headers()['content-disposition'] || '') && body.subarray(4, 8).toString() === 'ftyp',
        'the clip link downloads an MP4: ' + JSON.stringify(clipReport));
    }
    step('played to end', Object.assign({ durationAtMetadata: loaded.duration, listedS: entry.duration_s,
      seekTarget: nearEnd, seekLanded: outT, clip: clipReport }, played));

    // 3b. The same recording's quasi-stream tells its whole duration at loadedmetadata too (mehd).
    const streamed = await page.evaluate(async (p) => {
      const csrf = document.querySelector('meta[name="csrf"]').content;
      const r = await fetch('/v1/share', { method: 'POST', credentials: 'same-origin',
        headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrf },
        body: JSON.stringify({ path: p, modes: ['stream'], expires_s: 600 }) });
      const link = (await r.json()).path + '&mode=stream';
      const v = document.createElement('video');
      v.muted = true;
      const d = await new Promise((ok, fail) => {
        v.addEventListener('loadedmetadata', () => ok(v.duration), { once: true });
        v.addEventListener('error', () => fail(new Error('media error ' + (v.error && v.error.message))), { once: true });
        v.src = link;
      });
      v.removeAttribute('src');
      v.load();
      return { duration: d, src: link };
    }, filePath);
    check(Math.abs(streamed.duration - entry.duration_s) < 0.1,
      `quasi-stream duration at loadedmetadata ${streamed.duration} is ${entry.duration_s}`);
    step('stream duration', streamed);

    // 3c. The clip exported to a ZIP: a job in the Exports section, polled to success, whose
    // download link gives the ZIP.
    if (exportsOn) {
      await page.click('#clip-export');
      await page.locator('#clip-status').filter({ hasText: 'Export started' }).waitFor();
      const job = page.locator('#export-list li').first();
      await job.locator('a.download').waitFor();
      const j = await job.evaluate((li) => ({ id: li.dataset.id, state: li.dataset.state,
        progress: li.querySelector('.progress').textContent, download: li.querySelector('a.download').getAttribute('href') }));
      check(j.state === 'succeeded' && /^1 of 1 items/.test(j.progress), 'export job succeeded: ' + JSON.stringify(j));
      const z = await page.request.get(base + j.download);
      const body = await z.body();
      check(z.status() === 200 && body.subarray(0, 4).toString('latin1') === 'PK\x03\x04', 'export ZIP downloads');
      await page.screenshot({ path: path.join(outDir, 'exports.png') });
      step('exported', Object.assign(j, { zipLen: body.length }));
    }

    // 4. An H.265 recording: offered for download, with a note, when the browser cannot decode it.
    if (hevcDay) {
      await page.goto(base + '/ui' + hevcDay);
      const h = await page.evaluate(() => {
        const card = document.querySelector('li.card');
        const v = document.getElementById('video');
        const note = card.querySelector('.note');
        return { codecs: card.dataset.codecs, canPlayType: v.canPlayType('video/mp4; codecs="' + card.dataset.codecs + '"'),
          playDisabled: card.querySelector('button.play').disabled, note: note.hidden ? null : note.textContent,
          download: card.querySelector('a.download').getAttribute('href') };
      });
      check(/^hev1|^hvc1/.test(h.codecs), 'H.265 codecs string');
      if (h.canPlayType === '') check(h.playDisabled && /H\.265/.test(h.note), 'undecodable H.265 says so');
      else check(!h.playDisabled, 'decodable H.265 can be played');
      check(h.download.endsWith('.mp4'), 'download link');
      await page.screenshot({ path: path.join(outDir, 'hevc.png') });
      step('hevc', h);
    }

    // 5. Watch a live broadcast for a few seconds.
    if (liveCam) {
      await page.goto(base + '/ui/' + liveCam + '/');
      const live = page.locator('li.card[data-live="true"] button.play');
      await live.waitFor();
      await live.click();
      await page.waitForFunction(() => { const v = document.getElementById('video'); return v.currentTime > 0 && !v.paused; });
      const t0 = await page.evaluate(() => document.getElementById('video').currentTime);
      await page.waitForTimeout(watchS * 1000);
      const w = await page.evaluate(() => { const v = document.getElementById('video');
        return { currentTime: v.currentTime, paused: v.paused, ended: v.ended, width: v.videoWidth, src: v.currentSrc,
          title: document.getElementById('now').textContent, frames: v.getVideoPlaybackQuality().totalVideoFrames }; });
      await page.screenshot({ path: path.join(outDir, 'live.png') });
      const advanced = w.currentTime - t0;
      check(advanced > watchS * 0.6, `live playback advanced ${advanced.toFixed(2)} s in ${watchS} s`);
      check(/live\.mp4\?/.test(w.src) && /[?&]mode=stream/.test(w.src), 'live tail URL');
      check(await page.locator('#clip').isHidden(), 'no in/out points on a live broadcast');
      step('watched live', Object.assign({ startTime: t0, advancedS: advanced }, w));
    }
    report.ok = true;
  } catch (e) {
    report.ok = false;
    report.error = String(e.message || e);
    try { await page.screenshot({ path: path.join(outDir, 'failure.png') }); } catch (_) {}
  }
  report.consoleErrors = consoleErrors;
  await ctx.close();
  fs.rmSync(userDataDir, { recursive: true, force: true });
  console.log(JSON.stringify(report));
  process.exit(report.ok ? 0 : 1);
})();

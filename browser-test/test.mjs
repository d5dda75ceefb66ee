// The browser client in a real headless Chromium (Debian's), driven by playwright-core.
//
// Needs CHAT_URL (the page, http://127.0.0.1:PORT/) of a running chat_server; run.sh starts
// one. With CHAT_SERVER_BIN and CHAT_SERVER_PID also set, it restarts that server on the same
// port to see the page reconnect by itself (writing the new server's pid to
// CHAT_SERVER_PIDFILE, so run.sh can stop it whatever happens here).
//
// Two pages log in, talk, DM, try an HTML injection, load history by scrolling, and live
// through a server restart; the two pages side by side are saved as docs/two-tabs.png.
// Accounts, in browser contexts of their own: a guest registers its name, another context needs
// the password for it (a wrong one fails), a token in the page's fragment logs in, and neither a
// password nor a wrong one is left in any storage or cookie. With CHAT_SERVER_DATA (the store
// directory) the restart keeps the accounts, and those pages log in again by themselves;
// CHAT_JWT_SECRET_FILE (the server's --jwt-secret-file) lets the test sign a token.
// Resuming: with CHAT_SERVER_BIN the test also starts a server of its own (in memory, with a
// small resume limit) behind a loopback TCP relay, cuts a page's connection there while another
// page talks and DMs it, and checks that the page, back by itself, shows everything once, in
// order.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, statSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createServer, connect } from 'node:net';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const CHAT_URL = process.env.CHAT_URL;
if (!CHAT_URL || !/^http:\/\/127\.0\.0\.1:\d+\/$/.test(CHAT_URL)) {
  throw new Error(`CHAT_URL must be http://127.0.0.1:PORT/ (got ${CHAT_URL})`);
}
const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const SCREENSHOT = join(ROOT, 'docs', 'two-tabs.png');
const PATIENCE = 10_000; // ms any single expectation may take
const VIEWPORT = { width: 560, height: 400 };
const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];
const { CHAT_SERVER_DATA: DATA, CHAT_JWT_SECRET_FILE: JWT_SECRET_FILE } = process.env;
// carol's password, and a wrong one: neither may be left anywhere.
const PASSWORD = 'carol-correct-horse';
const WRONG = 'carol-wrong-battery';

let context;
let profile;
let alice;
let bob;
let restarted = null; // a server this test started
const ownServers = []; // servers of single tests, stopped at the end whatever happens
const pageErrors = [];
let browser = null; // a second browser, for the accounts' contexts
const accounts = {}; // those contexts and their pages

function watch(page) {
  page.on('pageerror', (error) => pageErrors.push(String(error)));
  return page;
}

async function newContext() {
  const made = await browser.newContext({ viewport: VIEWPORT });
  made.setDefaultTimeout(PATIENCE);
  return made;
}

// An HS256 JWT for `sub`, signed with the server's secret (the file without its newline).
function jwt(sub) {
  const secret = readFileSync(JWT_SECRET_FILE).toString('utf8').replace(/\r?\n$/, '');
  const part = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const exp = Math.floor(Date.now() / 1000) + 3600;
  const body = part({ alg: 'HS256', typ: 'JWT' }) + '.' + part({ sub, exp });
  return body + '.' + createHmac('sha256', secret).update(body).digest('base64url');
}

before(async () => {
  profile = mkdtempSync(join(tmpdir(), 'chat-browser-test-'));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    viewport: VIEWPORT,
    args: CHROMIUM_ARGS,
  });
  context.setDefaultTimeout(PATIENCE);
  alice = context.pages()[0] || (await context.newPage());
  bob = await context.newPage();
  for (const page of [alice, bob]) page.on('pageerror', (error) => pageErrors.push(String(error)));
});

after(async () => {
  if (browser) await browser.close();
  if (context) await context.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
  for (const server of [restarted, ...ownServers].filter(Boolean)) {
    server.kill('SIGTERM');
    await new Promise((resolve) => {
      if (server.exitCode !== null) resolve();
      else server.once('exit', resolve);
    });
  }
});

// Starts the bundled server with `args` (which bind `--ws 127.0.0.1:0`); resolves to its port
// once it listens.
async function startServer(bin, args) {
  const server = spawn(bin, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  ownServers.push(server);
  const line = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the server did not start')), PATIENCE);
    createInterface({ input: server.stdout }).on('line', (said) => {
      if (said.startsWith('listening ws://')) {
        clearTimeout(timer);
        resolve(said);
      }
    });
    server.once('exit', (code) => reject(new Error(`the server exited (${code})`)));
  });
  return Number(/^listening ws:\/\/127\.0\.0\.1:(\d+)\//.exec(line)[1]);
}

// A TCP relay on a free loopback port in front of the server on `port`, page and WebSocket
// alike. cut() drops every connection through it, as a network failure would (no close frame),
// and refuses new ones until open().
async function relayTo(port) {
  const sockets = new Set();
  let open = true;
  const relay = createServer((client) => {
    if (!open) {
      client.destroy();
      return;
    }
    const upstream = connect(port, '127.0.0.1');
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('error', () => {});
      socket.on('close', () => {
        sockets.delete(socket);
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise((resolve) => relay.listen(0, '127.0.0.1', resolve));
  const cut = () => {
    open = false;
    for (const socket of sockets) socket.destroy();
  };
  return {
    url: `http://127.0.0.1:${relay.address().port}/`,
    cut,
    open: () => {
      open = true;
    },
    close: () => {
      cut();
      relay.close();
    },
  };
}

// The conversation a page shows.
const shown = (page) => page.locator('#views ol.messages:not([hidden])');
const status = (page) => page.locator('#status');

async function login(page, name) {
  await page.goto(CHAT_URL);
  await page.fill('#name', name);
  await page.click('#login-form button[type=submit]');
  await page.locator('#status[data-state="online"]').waitFor();
  assert.equal(await page.textContent('#me'), name);
}

async function say(page, text) {
  await page.fill('#text', text);
  await page.press('#text', 'Enter');
}

async function openRoom(page, room) {
  await page.click(`#rooms button[data-room="${room}"]`);
  await page.locator('#conv-title', { hasText: `#${room}` }).waitFor();
}

test('the page is served on the WebSocket port and two pages log in', async () => {
  await login(alice, 'alice');
  await login(bob, 'bob');
  assert.equal(await alice.locator('#conv-title').textContent(), '#general');
});

test('the room list shows member counts', async () => {
  const general = alice.locator('#rooms button[data-room="general"] .count');
  await general.filter({ hasText: /^2$/ }).waitFor();
  await alice.click('#refresh-rooms');
  assert.equal(await general.textContent(), '2');
});

test('presence: alice sees bob join', async () => {
  await shown(alice).locator('li.presence', { hasText: 'bob joined #general' }).waitFor();
});

test('one page says something and the other shows it, own messages on the right', async () => {
  await say(alice, 'hello from alice');
  const onBob = shown(bob).locator('li.msg.other', { hasText: 'hello from alice' });
  await onBob.waitFor();
  assert.equal(await onBob.locator('.from').textContent(), 'alice');
  const onAlice = shown(alice).locator('li.msg.own', { hasText: 'hello from alice' });
  await onAlice.waitFor();
  await say(bob, 'hi alice');
  const reply = shown(alice).locator('li.msg.other', { hasText: 'hi alice' });
  await reply.waitFor();
  const mine = await onAlice.boundingBox();
  const theirs = await reply.boundingBox();
  const list = await shown(alice).boundingBox();
  assert.ok(mine.x + mine.width > list.x + list.width - 40, 'own message on the right');
  assert.ok(theirs.x < list.x + 40, "others' message on the left");
});

test('a direct message reaches only its recipient', async () => {
  await alice.click('#members button.member:not(.me)');
  assert.equal(await alice.inputValue('#dm-to'), 'bob');
  await say(alice, 'a secret for bob');
  await shown(alice).locator('li.msg.own', { hasText: 'a secret for bob' }).waitFor();
  assert.equal(
    await shown(alice).locator('li.msg.own .from').last().textContent(),
    'to bob',
  );
  await bob.locator('#open-dms .badge', { hasText: '1' }).waitFor();
  await bob.click('#open-dms');
  const dm = shown(bob).locator('li.msg.other', { hasText: 'a secret for bob' });
  await dm.waitFor();
  assert.equal(await dm.locator('.from').textContent(), 'alice');
  assert.equal(await bob.inputValue('#dm-to'), 'alice', 'a reply goes back to the sender');
});

test('an HTML injection attempt is shown as text', async () => {
  const attack = '<img src=x onerror="window.__pwned=1;document.title=\'pwned\'"><b>bold?</b>';
  await openRoom(alice, 'general');
  await openRoom(bob, 'general');
  await say(alice, attack);
  const onBob = shown(bob).locator('li.msg.other .text').filter({ hasText: 'onerror' });
  await onBob.waitFor();
  assert.equal(await onBob.textContent(), attack, 'the exact text, as text');
  for (const page of [alice, bob]) {
    assert.equal(await page.locator('#views img, #views b').count(), 0, 'no element was made');
    assert.equal(await page.evaluate(() => window.__pwned), undefined, 'no script ran');
    assert.notEqual(await page.title(), 'pwned');
  }
});

test('a screenshot of the two pages side by side', async () => {
  await say(bob, 'see, it is only text');
  await shown(alice).locator('li.msg', { hasText: 'see, it is only text' }).waitFor();
  const shots = [];
  for (const page of [alice, bob]) shots.push((await page.screenshot()).toString('base64'));
  const frame = await context.newPage();
  await frame.setViewportSize({ width: VIEWPORT.width * 2 + 12, height: VIEWPORT.height + 8 });
  await frame.setContent(
    '<body style="margin:0;padding:4px;display:flex;gap:4px;background:#5b6573">' +
      shots.map((s) => `<img alt="" src="data:image/png;base64,${s}">`).join('') +
      '</body>',
  );
  await frame.waitForFunction(() => [...document.images].every((i) => i.complete));
  mkdirSync(dirname(SCREENSHOT), { recursive: true });
  writeFileSync(SCREENSHOT, await frame.screenshot());
  await frame.close();
  const size = statSync(SCREENSHOT).size;
  assert.ok(size < 200_000, `the screenshot is small (${size} bytes)`);
  console.log(`# screenshot: ${SCREENSHOT} (${size} bytes)`);
});

test('history loads on join and on scrolling up', async () => {
  await alice.fill('#join-room', 'history');
  await alice.press('#join-room', 'Enter');
  await alice.locator('#conv-title', { hasText: '#history' }).waitFor();
  const lines = Array.from({ length: 70 }, (_, i) => `line ${i + 1}`);
  for (const line of lines) await say(alice, line);
  await shown(alice).locator('li.msg.own .text', { hasText: /^line 70$/ }).waitFor();

  await bob.fill('#join-room', 'history');
  await bob.press('#join-room', 'Enter');
  await bob.locator('#conv-title', { hasText: '#history' }).waitFor();
  const list = shown(bob);
  // The join's last messages, then older pages until the list can scroll.
  await list.locator('li.msg .text', { hasText: /^line 70$/ }).waitFor();
  await bob.waitForFunction(() => {
    const ol = document.querySelector('#views ol.messages:not([hidden])');
    return ol.querySelectorAll('li.msg').length > 5 && ol.scrollHeight > ol.clientHeight;
  });
  assert.equal(await list.locator('li.start').count(), 0, 'not at the start yet');
  // Scrolling up loads the rest.
  await list.evaluate((ol) => {
    ol.scrollTop = 0;
    ol.dispatchEvent(new Event('scroll'));
  });
  await list.locator('li.start', { hasText: 'the beginning of #history' }).waitFor();
  const texts = await list.locator('li.msg .text').allTextContents();
  assert.deepEqual(texts, lines, 'every message once, oldest first');
});

// The messages list of a room on a page, shown or not.
const roomList = (page, room) => page.locator(`#views ol[data-view="room:${room}"]`);

test('a guest registers its name; another context needs its password', async () => {
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: CHROMIUM_ARGS,
  });
  accounts.first = await newContext();
  accounts.second = await newContext();
  const guest = watch(await accounts.first.newPage());
  const other = watch(await accounts.second.newPage());
  Object.assign(accounts, { guest, other });

  // From the login form: in as a guest, then registered.
  await guest.goto(CHAT_URL);
  await guest.fill('#name', 'carol');
  await guest.fill('#password', PASSWORD);
  await guest.click('#register-button');
  await guest.locator('#status[data-state="online"]').waitFor();
  await shown(guest).locator('li.info', { hasText: 'carol is now registered' }).waitFor();
  assert.equal(await guest.inputValue('#password'), '', 'the password field is cleared');
  assert.ok(await guest.locator('#register-open').isHidden(), 'nothing left to register');
  // That tab goes elsewhere; the name is free, but it is carol's now.
  await guest.goto('about:blank');
  await roomList(alice, 'general')
    .locator('li.presence', { hasText: 'carol left #general' })
    .waitFor({ state: 'attached' });

  // The name alone: the page asks for its password.
  await other.goto(CHAT_URL);
  await other.fill('#name', 'carol');
  await other.click('#login-button');
  await other.locator('#login-hint', { hasText: 'This name is registered: enter its password.' })
    .waitFor();
  assert.equal(await other.evaluate(() => document.activeElement.id), 'password');
  assert.ok(await other.locator('#chat').isHidden());
  // A wrong password: said next to the form.
  await other.fill('#password', WRONG);
  await other.click('#login-button');
  await other.locator('#login-error', { hasText: 'Login failed: wrong name or password.' })
    .waitFor();
  assert.equal(await other.inputValue('#password'), '', 'the password field is cleared');
  // The right one: in, and talking.
  await other.fill('#password', PASSWORD);
  await other.press('#password', 'Enter');
  await other.locator('#status[data-state="online"]').waitFor();
  assert.equal(await other.textContent('#me'), 'carol');
  assert.ok(await other.locator('#register-open').isHidden(), 'an account has nothing to register');
  await say(other, 'carol here, with her password');
  await shown(other).locator('li.msg.own', { hasText: 'carol here, with her password' }).waitFor();
  await roomList(alice, 'general')
    .locator('li.msg.other', { hasText: 'carol here, with her password' })
    .waitFor({ state: 'attached' });
  // A DM to a name that is neither online nor an account: user_offline, in words.
  await other.click('#open-dms');
  await other.fill('#dm-to', 'nobody-here');
  await say(other, 'anyone?');
  await shown(other)
    .locator('li.error', { hasText: 'nobody-here is not online and has no account' })
    .waitFor();
});

test('a reload remembers the name, and asks for the password again', async () => {
  const { guest } = accounts;
  await guest.goto(CHAT_URL);
  await guest.locator('#login-hint', { hasText: 'This name is registered' }).waitFor();
  assert.equal(await guest.inputValue('#name'), 'carol');
  assert.equal(await guest.inputValue('#password'), '');
});

test('a guest registers from the page header', async () => {
  const page = watch(await accounts.second.newPage());
  accounts.header = page;
  await login(page, 'dave');
  await page.click('#register-open');
  await page.fill('#register-password', 'short');
  await page.press('#register-password', 'Enter');
  await page.locator('#register-error', { hasText: '8 to 256 bytes' }).waitFor();
  await page.fill('#register-password', PASSWORD + '-dave');
  await page.press('#register-password', 'Enter');
  await shown(page).locator('li.info', { hasText: 'dave is now registered' }).waitFor();
  assert.ok(await page.locator('#register-form').isHidden());
});

test('a token in the page address logs in, and is taken out of the address', async (t) => {
  if (!JWT_SECRET_FILE) {
    t.skip('CHAT_JWT_SECRET_FILE is not set');
    return;
  }
  accounts.third = await newContext();
  const page = watch(await accounts.third.newPage());
  accounts.token = page;
  await page.goto(CHAT_URL + '#token=' + jwt('erin'));
  await page.locator('#status[data-state="online"]').waitFor();
  assert.equal(await page.textContent('#me'), 'erin');
  assert.equal(new URL(page.url()).hash, '', 'the token left the address bar');
  assert.ok(await page.locator('#register-open').isHidden(), 'a token is an account');
});

test('a page cut off while others talk shows everything it missed once, in order', async (t) => {
  const bin = process.env.CHAT_SERVER_BIN;
  if (!bin) {
    t.skip('CHAT_SERVER_BIN is not set');
    return;
  }
  // A resume limit of 5: what the page misses does not fit in one joined, so it pages back.
  const port = await startServer(bin, [
    '--memory', '--resume-limit', '5', '--ws', '127.0.0.1:0', '--tcp', 'off',
  ]);
  const relay = await relayTo(port);
  t.after(relay.close);
  browser ??= await chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: CHROMIUM_ARGS,
  });
  const frank = watch(await (await newContext()).newPage());
  const gina = watch(await (await newContext()).newPage());
  const texts = (page, view) => page.locator(`#views ol[data-view="${view}"] li.msg .text`);
  const has = (page, view, text) =>
    texts(page, view).filter({ hasText: new RegExp(`^${text}$`) }).waitFor({ state: 'attached' });
  const sayAll = async (lines) => {
    for (const line of lines) await say(gina, line);
  };
  const numbered = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => `r${from + i}`);

  // frank, an account (DMs wait for it), through the relay; gina straight to the server.
  await frank.goto(relay.url);
  await frank.fill('#name', 'frank');
  await frank.fill('#password', PASSWORD + '-frank');
  await frank.click('#register-button');
  await shown(frank).locator('li.info', { hasText: 'frank is now registered' }).waitFor();
  await gina.goto(`http://127.0.0.1:${port}/`);
  await gina.fill('#name', 'gina');
  await gina.click('#login-form button[type=submit]');
  await gina.locator('#status[data-state="online"]').waitFor();
  for (const page of [frank, gina]) {
    await say(page, '/join resume');
    await page.locator('#conv-title', { hasText: '#resume' }).waitFor();
  }
  await sayAll(numbered(1, 5));
  await has(frank, 'room:resume', 'r5');

  // gina goes on talking; frank's connection is cut in the middle of it, and stays down while
  // she talks and DMs him.
  const flowing = sayAll(numbered(6, 15));
  await has(frank, 'room:resume', 'r8');
  relay.cut();
  await frank.locator('#status[data-state="reconnecting"]').waitFor();
  await flowing;
  await sayAll([...numbered(16, 20), '/dm frank d1', ...numbered(21, 30), '/dm frank d2']);
  await has(gina, 'room:resume', 'r30');
  await has(gina, 'dm', 'd2');

  // Back (at once, on a click), while gina goes on.
  relay.open();
  if (await frank.locator('#status[data-state="reconnecting"]').count()) {
    await frank.click('#status');
  }
  await frank.locator('#status[data-state="online"]').waitFor({ timeout: 15_000 });
  await sayAll([...numbered(31, 33), '/dm frank d3']);
  await has(frank, 'room:resume', 'r33');
  await has(frank, 'dm', 'd3');
  // A last line: anything shown twice would have come before it.
  await say(gina, 'the end');
  await has(frank, 'room:resume', 'the end');

  assert.deepEqual(
    await texts(frank, 'room:resume').allTextContents(),
    [...numbered(1, 33), 'the end'],
    'every message once, in order',
  );
  assert.deepEqual(await texts(frank, 'dm').allTextContents(), ['d1', 'd2', 'd3']);
  await frank.context().close();
  await gina.context().close();
});

test('a lost connection is shown, and the page reconnects by itself', async (t) => {
  const { CHAT_SERVER_BIN: bin, CHAT_SERVER_PID: pid } = process.env;
  if (!bin || !pid) {
    t.skip('CHAT_SERVER_BIN and CHAT_SERVER_PID are not set');
    return;
  }
  const port = new URL(CHAT_URL).port;
  process.kill(Number(pid), 'SIGTERM');
  for (const page of [alice, bob]) {
    await page.locator('#status[data-state="reconnecting"]').waitFor();
    assert.match(await status(page).textContent(), /reconnecting in \d+ s/);
    await shown(page).locator('li.error', { hasText: 'the server is shutting down' }).waitFor();
  }
  const store = DATA ? ['--data', DATA] : ['--memory'];
  const tokens = JWT_SECRET_FILE ? ['--jwt-secret-file', JWT_SECRET_FILE] : [];
  restarted = spawn(bin, [...store, ...tokens, '--ws', `127.0.0.1:${port}`, '--tcp', 'off'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  if (process.env.CHAT_SERVER_PIDFILE) {
    writeFileSync(process.env.CHAT_SERVER_PIDFILE, String(restarted.pid));
  }
  const listening = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the server did not start')), PATIENCE);
    createInterface({ input: restarted.stdout }).on('line', (line) => {
      if (line.startsWith('listening ws://')) {
        clearTimeout(timer);
        resolve(line);
      }
    });
    restarted.once('exit', (code) => reject(new Error(`the server exited (${code})`)));
  });
  assert.equal(listening, `listening ws://127.0.0.1:${port}/chat`);
  // The back-off is at most 10 s; the pages come back by themselves, or on a click.
  for (const page of [alice, bob]) {
    await page.locator('#status[data-state="online"]').waitFor({ timeout: 15_000 });
    await shown(page).locator('li.info', { hasText: 'reconnected' }).waitFor();
  }
  // Both are back in #history, and talk again.
  await bob.locator('#rooms button[data-room="history"] .count', { hasText: /^2$/ }).waitFor();
  await say(alice, 'after the restart');
  await shown(bob).locator('li.msg.other', { hasText: 'after the restart' }).waitFor();
  // The accounts kept on disk: a password page logs in again with the password it holds in
  // memory, a token page with its token.
  if (DATA) {
    for (const page of [accounts.other, accounts.header, accounts.token].filter(Boolean)) {
      await page.locator('#status[data-state="online"]').waitFor({ timeout: 15_000 });
      // (Said in the conversation that was open; the rejoin may show another.)
      await page.locator('#views li.info', { hasText: 'reconnected' }).waitFor({ state: 'attached' });
      assert.ok(await page.locator('#login').isHidden(), 'no password asked for');
    }
  }
});

test('no password is left in any storage or cookie', async () => {
  const pages = [
    [context, alice],
    [accounts.first, accounts.guest],
    [accounts.second, accounts.other],
    [accounts.second, accounts.header],
    [accounts.third, accounts.token],
  ].filter(([, page]) => page);
  for (const [owner, page] of pages) {
    const stored = await page.evaluate(() =>
      JSON.stringify({ local: { ...localStorage }, session: { ...sessionStorage } }),
    );
    const cookies = JSON.stringify(await owner.cookies());
    for (const secret of [PASSWORD, WRONG, PASSWORD + '-dave']) {
      assert.ok(!stored.includes(secret), `a password in web storage: ${stored}`);
      assert.ok(!cookies.includes(secret), `a password in a cookie: ${cookies}`);
    }
    assert.equal(await page.evaluate(() => typeof window.state), 'undefined');
  }
  const kept = await accounts.other.evaluate(() => Object.keys(sessionStorage).sort());
  assert.deepEqual(kept, ['chat-name'], 'only the name is remembered');
});

test('no script errors on either page', () => {
  assert.deepEqual(pageErrors, []);
});

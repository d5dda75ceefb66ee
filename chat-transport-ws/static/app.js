// The browser client of the chat engine: one WebSocket to the listener that served this page,
// JSON frames as in docs/protocol.md. No build step, no libraries. Everything a user or the
// server wrote is put into the page with textContent, never as HTML.
//
// Accounts: a name may need its password (the server answers `auth_required`), and a guest may
// register the name it is using. A password is never stored: not in localStorage, not in
// sessionStorage, not in a cookie. It is kept in one variable of this script (state.password,
// never on `window`) for the lifetime of the tab, so that a lost connection logs in again by
// itself, as it does for a guest; a reload forgets it and asks again. A token handed to the page
// in its fragment (`#token=JWT`, how an app signs its users in) is taken out of the address
// and kept in sessionStorage, so that a reload of the tab logs in with it again.
//
// Reconnecting: every login after the first says `since`, the newest message or DM id the page
// has shown (ids are one sequence over rooms and DMs), and so does the join that takes the page
// back to a room. The server answers each room's `joined` with what came after it; when that was
// cut (`complete: false`: more were missed than it sends at once) the page asks for `history`
// before the oldest it got until it reaches `since`. An account's missed DMs follow the login as
// `dm` frames with `replay`. Messages go into their lists in id order and never twice (each view
// knows the ids it shows), so the conversation reads as if the connection had never dropped.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const meta = document.querySelector('meta[name="chat-path"]');
  const path = meta && meta.content.startsWith('/') ? meta.content : '/chat';
  const WS_URL = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + path;
  const PAGE = 50; // messages per history page
  const CATCH_UP_PAGE = 500; // messages per page when catching up after a reconnection
  const KEEPALIVE_MS = 25000; // ping when quiet this long; the connection is lost after 2.5 times
  const MAX_BACKOFF_MS = 10000;

  const state = {
    name: null, // the name to log in with
    password: null, // its password, in memory only (see the top of this file)
    token: null, // a token to log in with instead of name and password
    registering: null, // a password to register the name with once logged in as a guest
    account: false, // the name is an account's (a registered name)
    me: null, // the name as the server welcomed it
    everIn: false, // logged in at least once (so a lost connection is reconnected)
    loggedIn: false, // logged in on the current socket
    ws: null,
    attempt: 0,
    timer: null,
    countdown: null,
    lastHeard: 0,
    rooms: new Map(), // room name -> view, for the rooms the user is in
    leaving: new Set(), // rooms joined at a re-login that the user had left
    dm: null, // the direct messages view
    active: null,
    nextRef: 1,
    pending: new Map(), // ref -> what the frame was for
    lastId: 0, // the newest message or DM id shown: what a reconnection resumes from
    loginSince: null, // the `since` of the current socket's login (null: a first login)
    catchingUp: new Map(), // room -> since, while that room's missed messages are not all in
    burstSince: null, // the since of a resumed login until its pong: its DMs may still come
    roomList: [],
    refreshTimer: null,
  };

  // ---------------------------------------------------------------- helpers

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = String(text);
    return node;
  }

  function same(a, b) {
    return typeof a === 'string' && typeof b === 'string' && a.toLowerCase() === b.toLowerCase();
  }

  function clock(ts) {
    const date = new Date(ts);
    if (Number.isNaN(date.getTime())) return '';
    return date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  }

  function setStatus(kind, text) {
    const status = $('status');
    status.dataset.state = kind;
    status.textContent = text;
  }

  function send(frame, purpose) {
    const ws = state.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    if (purpose) {
      const ref = state.nextRef++;
      frame.ref = ref;
      state.pending.set(ref, purpose);
    }
    ws.send(JSON.stringify(frame));
    return true;
  }

  // ---------------------------------------------------------------- views

  function makeView(key, title, room) {
    const list = el('ol', 'messages');
    list.hidden = true;
    list.dataset.view = key;
    $('views').append(list);
    const view = {
      key, title, room, list,
      ids: new Set(), oldest: null, newest: null,
      atStart: false, loading: false, members: [], unread: 0,
    };
    list.addEventListener('scroll', () => {
      if (list.scrollTop < 40) loadOlder(view);
    });
    return view;
  }

  function dmView() {
    if (!state.dm) state.dm = makeView('dm', 'Direct messages', null);
    return state.dm;
  }

  function roomView(room) {
    let view = state.rooms.get(room);
    if (!view) {
      view = makeView('room:' + room, '#' + room, room);
      state.rooms.set(room, view);
    }
    return view;
  }

  function activate(view) {
    if (state.active === view) return;
    if (state.active) state.active.list.hidden = true;
    state.active = view;
    view.list.hidden = false;
    view.unread = 0;
    $('conv-title').textContent = view.title;
    const isDm = view === state.dm;
    $('leave').hidden = isDm;
    $('dm-to').hidden = !isDm;
    $('text').placeholder = isDm
      ? 'Direct message'
      : 'Message #' + view.room + ' (or /join ROOM, /dm USER TEXT)';
    renderMembers();
    renderRooms();
    stickToBottom(view);
    fill(view);
  }

  function firstView() {
    const [room] = state.rooms.values();
    return room || dmView();
  }

  function nearBottom(list) {
    return list.scrollHeight - list.scrollTop - list.clientHeight < 80;
  }

  function stickToBottom(view) {
    view.list.scrollTop = view.list.scrollHeight;
  }

  // Loads older history until the list can scroll (or the room's start is reached).
  function fill(view) {
    if (view === state.active && view.list.scrollHeight <= view.list.clientHeight + 40) {
      loadOlder(view);
    }
  }

  function loadOlder(view) {
    if (!view.room || view.loading || view.atStart || !state.loggedIn) return;
    const frame = { type: 'history', room: view.room, limit: PAGE };
    if (view.oldest !== null) frame.before = view.oldest;
    view.loading = send(frame, { kind: 'history', view });
  }

  // Puts a message element into the list in id order.
  function place(view, item, id) {
    const list = view.list;
    if (view.newest === null || id > view.newest) {
      list.append(item);
    } else if (id < view.oldest) {
      list.insertBefore(item, list.querySelector('li.msg'));
    } else {
      let node = list.lastElementChild;
      while (node && !(node.dataset.id && Number(node.dataset.id) < id)) {
        node = node.previousElementSibling;
      }
      if (node) node.after(item);
      else list.prepend(item);
    }
    view.ids.add(id);
    state.lastId = Math.max(state.lastId, id);
    view.oldest = view.oldest === null ? id : Math.min(view.oldest, id);
    view.newest = view.newest === null ? id : Math.max(view.newest, id);
  }

  function messageItem(message, own, label) {
    const item = el('li', 'msg ' + (own ? 'own' : 'other'));
    item.dataset.id = String(message.id);
    const head = el('div', 'meta');
    head.append(el('span', 'from', label), el('time', null, clock(message.ts)));
    head.lastChild.title = message.ts;
    item.append(head, el('div', 'text', message.text));
    return item;
  }

  function addMessage(view, message, label) {
    if (typeof message.id !== 'number' || view.ids.has(message.id)) return false;
    const own = same(message.from, state.me);
    const stick = own || nearBottom(view.list);
    place(view, messageItem(message, own, label), message.id);
    if (view === state.active) {
      if (stick) stickToBottom(view);
    } else if (!own) {
      view.unread += 1;
    }
    return true;
  }

  function line(view, className, text) {
    if (!view) return;
    const stick = nearBottom(view.list);
    view.list.append(el('li', className, text));
    if (view === state.active && stick) stickToBottom(view);
  }

  function note(text) {
    line(state.active || dmView(), 'info', text);
  }

  function problem(text, view) {
    line(view || state.active || dmView(), 'error', text);
  }

  // ---------------------------------------------------------------- sidebar

  function renderMembers() {
    const box = $('members');
    box.replaceChildren();
    const view = state.active;
    if (!view || !view.room) return;
    box.append(el('span', 'count', view.members.length + ' here: '));
    for (const name of view.members) {
      const button = el('button', same(name, state.me) ? 'member me' : 'member', name);
      button.type = 'button';
      button.title = same(name, state.me) ? 'you' : 'Send ' + name + ' a direct message';
      button.addEventListener('click', () => {
        if (same(name, state.me)) return;
        activate(dmView());
        $('dm-to').value = name;
        $('text').focus();
      });
      box.append(button);
    }
  }

  function renderRooms() {
    const counts = new Map(state.roomList.map((r) => [r.room, r.members]));
    for (const [room, view] of state.rooms) {
      if (!counts.has(room)) counts.set(room, view.members.length);
    }
    const list = $('rooms');
    list.replaceChildren();
    for (const room of [...counts.keys()].sort()) {
      const view = state.rooms.get(room);
      const button = el('button', 'view-link');
      button.type = 'button';
      button.dataset.room = room;
      if (view) button.classList.add('joined');
      if (view && view === state.active) button.classList.add('active');
      button.append(el('span', 'label', '#' + room), el('span', 'count', counts.get(room)));
      const badge = el('span', 'badge', view ? view.unread : 0);
      badge.hidden = !view || view.unread === 0;
      button.append(badge);
      button.title = view ? 'Show #' + room : 'Join #' + room;
      button.addEventListener('click', () => {
        if (state.rooms.has(room)) activate(state.rooms.get(room));
        else send({ type: 'join', room }, { kind: 'join' });
      });
      const item = el('li');
      item.append(button);
      list.append(item);
    }
    const dm = state.dm;
    const badge = $('open-dms').querySelector('.badge');
    badge.textContent = dm ? String(dm.unread) : '0';
    badge.hidden = !dm || dm.unread === 0;
    $('open-dms').classList.toggle('active', !!dm && dm === state.active);
  }

  function refreshRooms(soon) {
    clearTimeout(state.refreshTimer);
    state.refreshTimer = setTimeout(() => send({ type: 'rooms' }), soon ? 250 : 0);
  }

  // ---------------------------------------------------------------- server frames

  const handlers = {
    welcome(frame) {
      const first = !state.everIn;
      state.me = frame.name;
      state.everIn = true;
      state.loggedIn = true;
      state.attempt = 0;
      state.account = frame.account === true;
      if (!state.name || state.token) state.name = frame.name;
      sessionStorage.setItem('chat-name', state.name);
      setStatus('online', 'online');
      $('me').textContent = frame.name;
      $('login').hidden = true;
      $('login-hint').hidden = true;
      $('login-error').textContent = '';
      $('chat').hidden = false;
      renderAccount();
      const atLogin = Array.isArray(frame.rooms) ? frame.rooms : [];
      if (first) {
        if (!state.active) activate(atLogin.length ? roomView(atLogin[0]) : dmView());
      } else {
        note('reconnected');
        const since = state.loginSince;
        if (since !== null) {
          // What was missed comes with each room's joined, then (for an account) the DMs; the
          // pong of this ping follows them all.
          state.catchingUp.clear();
          for (const room of atLogin) if (state.rooms.has(room)) state.catchingUp.set(room, since);
          state.burstSince = since;
          send({ type: 'ping' }, { kind: 'burst' });
        }
        // Back to where the user was: the rooms they were in, and not the ones they had left.
        for (const room of state.rooms.keys()) {
          if (atLogin.includes(room)) continue;
          const frame = { type: 'join', room };
          if (since !== null) {
            frame.since = since;
            state.catchingUp.set(room, since);
          }
          send(frame, { kind: 'rejoin' });
        }
        for (const room of atLogin) {
          if (!state.rooms.has(room)) {
            state.leaving.add(room);
            send({ type: 'leave', room }, { kind: 'leave' });
          }
        }
      }
      refreshRooms(false);
      const registering = state.registering;
      state.registering = null;
      if (registering !== null) {
        if (state.account) note(frame.name + ' is registered already');
        else register(registering);
      }
    },

    registered(frame, purpose) {
      state.account = true;
      // From now on a login of this name needs the password: keep it for the reconnections.
      if (purpose && purpose.kind === 'register') state.password = purpose.password;
      closeRegister();
      renderAccount();
      note(frame.name + ' is now registered');
    },

    joined(frame, purpose) {
      if (state.leaving.has(frame.room)) return;
      const view = roomView(frame.room);
      const newest = view.newest;
      view.members = Array.isArray(frame.members) ? frame.members : [];
      const history = Array.isArray(frame.history) ? frame.history : [];
      for (const message of history) addMessage(view, message, message.from);
      const since = state.catchingUp.get(frame.room);
      if (since !== undefined && (!purpose || purpose.kind === 'rejoin')) {
        const oldest = history.length && typeof history[0].id === 'number' ? history[0].id : null;
        // Cut short, and nothing in it was shown before: what is older comes page by page.
        const gap = oldest === null || newest === null || oldest > newest;
        if (frame.complete === false && gap) catchUp(view, since, oldest);
        else state.catchingUp.delete(frame.room);
      }
      if (purpose && purpose.kind === 'join') activate(view);
      else if (!state.active || (state.active === state.dm && !state.dm.ids.size)) activate(view);
      if (view === state.active) renderMembers();
      fill(view);
      refreshRooms(true);
    },

    left(frame) {
      state.leaving.delete(frame.room);
      const view = state.rooms.get(frame.room);
      if (!view) return;
      state.rooms.delete(frame.room);
      view.list.remove();
      if (state.active === view) {
        state.active = null;
        activate(firstView());
      }
      refreshRooms(true);
    },

    presence(frame) {
      const view = state.rooms.get(frame.room);
      if (!view) return;
      if (frame.event === 'join') {
        if (!view.members.some((m) => same(m, frame.user))) {
          view.members.push(frame.user);
          view.members.sort((a, b) => a.toLowerCase().localeCompare(b.toLowerCase()));
        }
        line(view, 'presence', frame.user + ' joined #' + frame.room);
      } else {
        view.members = view.members.filter((m) => !same(m, frame.user));
        line(view, 'presence', frame.user + ' left #' + frame.room);
      }
      if (view === state.active) renderMembers();
      refreshRooms(true);
    },

    message(frame) {
      const view = state.rooms.get(frame.room);
      if (view && addMessage(view, frame, frame.from)) renderRooms();
    },

    dm(frame) {
      const view = dmView();
      const own = same(frame.from, state.me);
      const label = own ? 'to ' + frame.to : frame.from;
      if (addMessage(view, frame, label)) {
        if (own && frame.queued) line(view, 'info', frame.to + ' is offline; they get it at their next login');
        if (!own) $('dm-to').value = $('dm-to').value || frame.from;
        renderRooms();
      }
    },

    history(frame, purpose) {
      const view = purpose && purpose.view;
      if (!view || !state.rooms.has(view.room)) return;
      if (purpose.kind === 'catchup') {
        caughtUp(view, purpose, Array.isArray(frame.messages) ? frame.messages : []);
        return;
      }
      view.loading = false;
      const messages = Array.isArray(frame.messages) ? frame.messages : [];
      const list = view.list;
      const fromBottom = list.scrollHeight - list.scrollTop;
      for (let i = messages.length - 1; i >= 0; i -= 1) {
        const message = messages[i];
        if (typeof message.id !== 'number' || view.ids.has(message.id)) continue;
        place(view, messageItem(message, same(message.from, state.me), message.from), message.id);
      }
      if (messages.length < PAGE) {
        view.atStart = true;
        const marker = el('li', 'start', 'the beginning of #' + view.room);
        list.prepend(marker);
      }
      list.scrollTop = list.scrollHeight - fromBottom;
      fill(view);
    },

    rooms(frame) {
      state.roomList = Array.isArray(frame.rooms) ? frame.rooms : [];
      renderRooms();
    },

    who(frame) {
      const view = state.rooms.get(frame.room) || state.active;
      line(view, 'info', 'in #' + frame.room + ': ' + (frame.members || []).join(', '));
    },

    pong(frame, purpose) {
      // A resumed login's DMs are all in.
      if (purpose && purpose.kind === 'burst') state.burstSince = null;
    },

    error(frame, purpose) {
      if (purpose && purpose.kind === 'history') {
        purpose.view.loading = false;
        purpose.view.atStart = true;
      }
      // A catch-up page refused: what there is stays shown, and the error says why.
      if (purpose && purpose.kind === 'catchup') state.catchingUp.delete(purpose.view.room);
      if (purpose && purpose.kind === 'register') {
        openRegister('Not registered: ' + (frame.message || frame.code));
        return;
      }
      if (!state.loggedIn && LOGIN_REFUSALS.has(frame.code)) {
        loginRefused(frame);
        return;
      }
      problem(frame.message || frame.code);
    },
  };

  // ---------------------------------------------------------------- catching up

  // Asks for the page of `view`'s missed messages before `before` (the newest, if null).
  function catchUp(view, since, before) {
    const frame = { type: 'history', room: view.room, limit: CATCH_UP_PAGE };
    if (before !== null) frame.before = before;
    // Not sent (the socket closed): the next login's since asks for it all again.
    send(frame, { kind: 'catchup', view, since, before });
  }

  // A page of missed messages: shown in place, then the next one until `since` is reached.
  function caughtUp(view, purpose, messages) {
    for (const message of messages) {
      if (typeof message.id === 'number' && message.id > purpose.since) {
        addMessage(view, message, message.from);
      }
    }
    const oldest = messages.length && typeof messages[0].id === 'number' ? messages[0].id : null;
    const reached = oldest === null || oldest <= purpose.since;
    const stuck = oldest !== null && purpose.before !== null && oldest >= purpose.before;
    if (reached || stuck) state.catchingUp.delete(view.room);
    else catchUp(view, purpose.since, oldest);
    renderRooms();
  }

  // The `since` of a reconnection's login: the newest id shown, or less while what was missed
  // before is not all in.
  function resumeFrom() {
    let since = state.lastId;
    for (const from of state.catchingUp.values()) since = Math.min(since, from);
    if (state.burstSince !== null) since = Math.min(since, state.burstSince);
    return since;
  }

  // ---------------------------------------------------------------- logging in

  // The errors that answer a login: the login form says why, and the connection stays for the
  // next attempt.
  const LOGIN_REFUSALS = new Set([
    'name_taken', 'invalid_name', 'auth_required', 'auth_failed', 'invalid_password',
    'rate_limited',
  ]);

  function loginFrame() {
    const frame = { type: 'login' };
    if (state.token) {
      frame.token = state.token;
    } else {
      frame.name = state.name;
      if (state.password) frame.password = state.password;
    }
    // After the first login, what was missed meanwhile comes with this one.
    state.loginSince = state.everIn ? resumeFrom() : null;
    if (state.loginSince !== null) frame.since = state.loginSince;
    return frame;
  }

  function forgetToken() {
    state.token = null;
    sessionStorage.removeItem('chat-token');
  }

  function loginRefused(frame) {
    const code = frame.code;
    if ((code === 'name_taken' || code === 'invalid_name') && state.everIn) {
      // The old connection may still hold the name until the server notices it is gone.
      state.ws.close();
      return;
    }
    state.registering = null;
    const hint = $('login-hint');
    hint.hidden = true;
    let error = '';
    if (code === 'auth_failed' && state.token) {
      forgetToken();
      error = 'The sign-in link was not accepted (it may have expired): log in with your name.';
    } else if (code === 'auth_required') {
      state.password = null;
      hint.textContent = 'This name is registered: enter its password.';
      hint.hidden = false;
    } else if (code === 'auth_failed') {
      state.password = null;
      error = 'Login failed: wrong name or password.';
    } else if (code === 'rate_limited') {
      error = 'Too many failed logins: wait a minute, then try again.';
    } else if (code === 'invalid_password') {
      error = 'A password has 8 to 256 bytes.';
    } else {
      error = frame.message || code;
    }
    $('login-error').textContent = error;
    if (state.name) $('name').value = state.name;
    $('login').hidden = false;
    $('chat').hidden = true;
    renderAccount();
    setStatus('offline', 'not logged in');
    if (code === 'auth_required' || code === 'auth_failed') $('password').focus();
    else $('name').focus();
  }

  // Registering the name a guest is logged in with.
  function register(password) {
    if (!send({ type: 'register', password }, { kind: 'register', password })) {
      openRegister('Not connected; not registered.');
    }
  }

  function passwordProblem(password) {
    const bytes = new TextEncoder().encode(password).length;
    if (bytes < 8 || bytes > 256) return 'A password has 8 to 256 bytes; this one has ' + bytes + '.';
    return null;
  }

  function renderAccount() {
    const guest = state.loggedIn && !state.account;
    if (!guest) closeRegister();
    $('register-open').hidden = !guest || !$('register-form').hidden;
  }

  function openRegister(error) {
    $('register-open').hidden = true;
    $('register-form').hidden = false;
    const box = $('register-error');
    box.textContent = error || '';
    box.hidden = !error;
    $('register-password').focus();
  }

  function closeRegister() {
    $('register-form').hidden = true;
    $('register-password').value = '';
    $('register-error').hidden = true;
    $('register-open').hidden = !(state.loggedIn && !state.account);
  }

  function onFrame(frame) {
    let purpose = null;
    if (frame.ref !== undefined) {
      purpose = state.pending.get(frame.ref) || null;
      state.pending.delete(frame.ref);
    }
    const handler = Object.prototype.hasOwnProperty.call(handlers, frame.type)
      ? handlers[frame.type]
      : null;
    if (handler) handler(frame, purpose);
  }

  // ---------------------------------------------------------------- connection

  function connect() {
    clearTimeout(state.timer);
    clearInterval(state.countdown);
    if (state.ws) return;
    setStatus('connecting', state.attempt ? 'reconnecting…' : 'connecting…');
    let ws;
    try {
      ws = new WebSocket(WS_URL);
    } catch (error) {
      scheduleReconnect();
      return;
    }
    state.ws = ws;
    state.loggedIn = false;
    ws.onopen = () => {
      state.lastHeard = Date.now();
      setStatus('connecting', 'logging in…');
      send(loginFrame());
    };
    ws.onmessage = (event) => {
      state.lastHeard = Date.now();
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch (error) {
        return;
      }
      if (frame && typeof frame === 'object' && typeof frame.type === 'string') onFrame(frame);
    };
    ws.onclose = (event) => {
      if (state.ws !== ws) return;
      state.ws = null;
      const was = state.loggedIn;
      state.loggedIn = false;
      state.pending.clear();
      for (const view of state.rooms.values()) view.loading = false;
      renderAccount();
      if (was) {
        const why = event.code === 1001 ? 'the server is shutting down' : 'connection lost';
        problem(why + (event.reason && event.code !== 1001 ? ': ' + event.reason : ''));
      }
      if (state.everIn) scheduleReconnect();
      else setStatus('offline', 'could not connect; press Enter to try again');
    };
  }

  function scheduleReconnect() {
    state.attempt += 1;
    const base = Math.min(MAX_BACKOFF_MS, 500 * 2 ** (state.attempt - 1));
    const delay = Math.round(base * (0.8 + Math.random() * 0.4));
    const until = Date.now() + delay;
    const show = () => {
      const left = Math.max(0, Math.ceil((until - Date.now()) / 1000));
      setStatus('reconnecting', 'offline, reconnecting in ' + left + ' s (click to retry now)');
    };
    show();
    clearInterval(state.countdown);
    state.countdown = setInterval(show, 1000);
    clearTimeout(state.timer);
    state.timer = setTimeout(connect, delay);
  }

  setInterval(() => {
    if (!state.ws || state.ws.readyState !== WebSocket.OPEN) return;
    const quiet = Date.now() - state.lastHeard;
    if (quiet > KEEPALIVE_MS * 2.5) state.ws.close();
    else if (quiet > KEEPALIVE_MS) send({ type: 'ping' });
    if (state.loggedIn && quiet > KEEPALIVE_MS) refreshRooms(false);
  }, KEEPALIVE_MS / 2);

  $('status').addEventListener('click', () => {
    if (state.everIn && !state.ws) connect();
  });
  window.addEventListener('online', () => {
    if (state.everIn && !state.ws) connect();
  });

  // ---------------------------------------------------------------- user input

  // Logs in with a name, and its password if given; `registering`: a password to register the
  // name with once logged in as a guest.
  function login(name, password, registering) {
    forgetToken();
    state.name = name;
    state.password = password || null;
    state.registering = registering || null;
    $('login-error').textContent = '';
    $('login-hint').hidden = true;
    if (state.ws && state.ws.readyState === WebSocket.OPEN) send(loginFrame());
    else connect();
  }

  // The password field's value, which is then cleared: the page keeps no copy in the form.
  function takePassword(input) {
    const password = input.value;
    input.value = '';
    return password;
  }

  $('login-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const name = $('name').value.trim();
    const password = takePassword($('password'));
    if (name) login(name, password, null);
  });

  $('register-button').addEventListener('click', () => {
    const name = $('name').value.trim();
    const password = takePassword($('password'));
    const error = !name
      ? 'Choose a name first.'
      : !password
        ? 'Choose a password (8 to 256 bytes) to register the name with.'
        : passwordProblem(password);
    if (error) {
      $('login-error').textContent = error;
      $(name ? 'password' : 'name').focus();
      return;
    }
    login(name, null, password);
  });

  $('register-open').addEventListener('click', () => openRegister(''));
  $('register-cancel').addEventListener('click', closeRegister);
  $('register-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const password = takePassword($('register-password'));
    if (!password) return;
    const error = passwordProblem(password);
    if (error) openRegister(error);
    else register(password);
  });

  $('join-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const room = $('join-room').value.trim();
    if (room && send({ type: 'join', room }, { kind: 'join' })) $('join-room').value = '';
  });

  $('leave').addEventListener('click', () => {
    const view = state.active;
    if (view && view.room) send({ type: 'leave', room: view.room }, { kind: 'leave' });
  });

  $('refresh-rooms').addEventListener('click', () => refreshRooms(false));
  $('open-dms').addEventListener('click', () => activate(dmView()));

  // A typed line: the line transport's slash commands, or a message for the open conversation.
  function typed(text) {
    const view = state.active;
    if (text.startsWith('/') && !text.startsWith('//')) {
      const [command, ...rest] = text.slice(1).split(/\s+/);
      const args = text.slice(1 + command.length).trim();
      switch (command) {
        case 'join':
        case 'j':
          return rest.length === 1 && rest[0]
            ? send({ type: 'join', room: rest[0] }, { kind: 'join' })
            : problem('usage: /join ROOM');
        case 'leave':
          return view && view.room
            ? send({ type: 'leave', room: rest[0] || view.room }, { kind: 'leave' })
            : problem('usage: /leave ROOM');
        case 'dm':
        case 'msg': {
          const match = /^(\S+)\s+([\s\S]*\S[\s\S]*)$/.exec(args);
          return match
            ? send({ type: 'dm', to: match[1], text: match[2] }, { kind: 'dm' })
            : problem('usage: /dm USER TEXT');
        }
        case 'who':
          return rest[0] || (view && view.room)
            ? send({ type: 'who', room: rest[0] || view.room }, { kind: 'who' })
            : problem('usage: /who ROOM');
        case 'rooms':
          return send({ type: 'rooms' });
        case 'register':
          // The password goes in the form, where it is not shown.
          if (state.account) return problem(state.me + ' is registered already');
          openRegister(args ? 'Type the password here, where it is not shown.' : '');
          return true;
        case 'history':
          if (view && view.room) loadOlder(view);
          return true;
        default:
          return problem(
            'unknown command /' + command + ' (try /join, /leave, /dm, /who, /rooms, /register)',
          );
      }
    }
    const said = text.startsWith('//') ? text.slice(1) : text;
    if (view === state.dm) {
      const to = $('dm-to').value.trim();
      if (!to) {
        problem('who is it for? Fill in "to"', view);
        $('dm-to').focus();
        return false;
      }
      return send({ type: 'dm', to, text: said }, { kind: 'dm' });
    }
    if (!view || !view.room) return problem('join a room first');
    return send({ type: 'say', room: view.room, text: said }, { kind: 'say' });
  }

  $('composer').addEventListener('submit', (event) => {
    event.preventDefault();
    const input = $('text');
    const text = input.value;
    if (!text.trim()) return;
    if (!state.loggedIn) {
      problem('not connected; not sent');
      return;
    }
    if (typed(text) === true) input.value = '';
  });

  // A token in the fragment (`#token=JWT`): taken out of the address bar and the tab's history,
  // kept for reloads of this tab only.
  const handed = new URLSearchParams(location.hash.slice(1)).get('token');
  if (handed) {
    sessionStorage.setItem('chat-token', handed);
    history.replaceState(null, '', location.pathname + location.search);
  }
  const token = handed || sessionStorage.getItem('chat-token');
  const remembered = sessionStorage.getItem('chat-name');
  if (token) {
    state.token = token;
    connect();
  } else if (remembered) {
    $('name').value = remembered;
    login(remembered, null, null);
  }
})();

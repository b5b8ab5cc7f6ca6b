// shotfarm customer dashboard. Plain ES2020, no dependencies, CSP-friendly:
// no inline handlers, no HTML parsing of data, no dynamic code.
'use strict';

// ---- Helpers ----

const $ = (selector, root = document) => root.querySelector(selector);
const $$ = (selector, root = document) => Array.from(root.querySelectorAll(selector));
const SVG_NS = 'http://www.w3.org/2000/svg';

/** Sets attributes (`text` sets textContent, never HTML) and appends children (nodes or strings). */
function build(node, props, children) {
  for (const [key, value] of Object.entries(props)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === 'text') node.textContent = String(value);
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

const h = (tag, props = {}, children = []) => build(document.createElement(tag), props, children);
const s = (tag, props = {}, children = []) => build(document.createElementNS(SVG_NS, tag), props, children);

const plural = (n, word) => `${n} ${word}${n === 1 ? '' : 's'}`;

const usd = (cents, maxDigits = 2) =>
  new Intl.NumberFormat('en-US', {
    style: 'currency',
    currency: 'USD',
    minimumFractionDigits: cents % 100 === 0 && maxDigits === 2 ? 0 : 2,
    maximumFractionDigits: maxDigits,
  }).format(cents / 100);

const perCredit = (pack) => usd(pack.priceCents / pack.credits, 4);

function formatDateTime(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return String(iso ?? '');
  return date.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
}

function formatDate(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso ?? '') : date.toLocaleDateString();
}

/** `2026-10-27` as a local calendar date (not UTC midnight). */
function parseDay(day) {
  const [y, m, d] = String(day).split('-').map(Number);
  return new Date(y, (m || 1) - 1, d || 1);
}

const formatDay = (day, options = { month: 'short', day: 'numeric' }) =>
  parseDay(day).toLocaleDateString(undefined, options);

const TX_TYPES = {
  purchase: 'Purchase', auto_topup: 'Auto top-up', usage: 'Usage',
  signup_bonus: 'Signup bonus', adjustment: 'Adjustment', refund: 'Refund',
};

/** Disables a button and swaps its label while `task` runs. */
async function withButton(button, busyLabel, task) {
  const label = button.textContent;
  const hadFocus = document.activeElement === button;
  button.disabled = true;
  button.textContent = busyLabel;
  try {
    return await task();
  } finally {
    button.disabled = false;
    button.textContent = label;
    // Disabling a focused button drops focus to <body>; give it back to keyboard users.
    if (hadFocus && document.activeElement === document.body) button.focus();
  }
}

/** Copies an element's text, falling back to selecting it so the user can press Ctrl+C. */
async function copyFrom(sourceEl, button) {
  let copied = false;
  try {
    await navigator.clipboard.writeText(sourceEl.textContent);
    copied = true;
  } catch {
    selectContents(sourceEl);
    copied = legacyCopy();
  }
  if (copied) {
    setStatus('Copied to clipboard.', 'ok');
    flashLabel(button, 'Copied');
  } else {
    selectContents(sourceEl);
    setStatus('Press Ctrl+C (or ⌘C) to copy the selected text.', 'info');
  }
}

function legacyCopy() {
  try {
    return document.execCommand('copy');
  } catch {
    return false;
  }
}

function selectContents(node) {
  const range = document.createRange();
  range.selectNodeContents(node);
  const selection = window.getSelection();
  selection.removeAllRanges();
  selection.addRange(range);
}

function flashLabel(button, text) {
  if (!button) return;
  const original = button.dataset.label || button.textContent;
  button.dataset.label = original;
  button.textContent = text;
  clearTimeout(button.flashTimer);
  button.flashTimer = setTimeout(() => {
    button.textContent = original;
  }, 1600);
}

// ---- Status line (aria-live) and form validation ----

function setStatus(message, kind = 'info') {
  const box = $('#status');
  box.className = `status is-${kind}`;
  box.textContent = message;
  $('#status-close').hidden = false;
}

function clearStatus() {
  const box = $('#status');
  box.className = 'status';
  box.textContent = '';
  $('#status-close').hidden = true;
}

function showError(err) {
  setStatus(err && err.message ? err.message : 'Something went wrong.', 'error');
  // An error from a button far down the page: bring the message into view.
  const box = $('#status');
  const rect = box.getBoundingClientRect();
  const inField = document.activeElement && document.activeElement.matches('input, select, textarea');
  if (!inField && (rect.top < 0 || rect.bottom > window.innerHeight)) box.scrollIntoView({ block: 'nearest' });
}

/** Checks a `novalidate` form with the browser's constraints; reports the first problem. */
function validateForm(form) {
  clearInvalid(form);
  for (const input of $$('input[type="url"]', form)) input.setCustomValidity(isHttpUrl(input.value) ? '' : 'invalid');
  const bad = Array.from(form.elements).find((el) => el.willValidate && !el.validity.valid);
  if (!bad) return true;
  bad.setAttribute('aria-invalid', 'true');
  setStatus(bad.dataset.error || bad.validationMessage, 'error');
  bad.focus();
  return false;
}

/** Empty, or an absolute http(s) URL (stricter than the browser's own type=url check). */
function isHttpUrl(value) {
  if (value.trim() === '') return true;
  try {
    const url = new URL(value.trim());
    return ['http:', 'https:'].includes(url.protocol) && /^[^\s%]+$/.test(url.hostname);
  } catch {
    return false;
  }
}

function clearInvalid(form) {
  for (const el of $$('[aria-invalid]', form)) el.removeAttribute('aria-invalid');
}

/** Marks the inputs named by a server error (`field` / `details`) as invalid. */
function markServerFields(err, fieldIds) {
  const fields = [err.field, ...(err.details || []).map((d) => d.field)].filter(Boolean);
  let first = null;
  for (const field of fields) {
    const input = fieldIds[field] && document.getElementById(fieldIds[field]);
    if (!input) continue;
    input.setAttribute('aria-invalid', 'true');
    first = first || input;
  }
  if (first) first.focus();
}

// ---- API ----

class ApiError extends Error {
  constructor(status, code, message, field = null, details = []) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field;
    this.details = details;
  }
}

/** JSON request. `raw: true` returns the Response (for images). 401 leads to the login page. */
async function api(path, { method = 'GET', body, raw = false, redirectOn401 = true } = {}) {
  const options = { method, credentials: 'same-origin', headers: {} };
  if (body !== undefined) {
    options.headers['Content-Type'] = 'application/json';
    options.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, options);
  } catch {
    throw new ApiError(0, 'network_error', 'Could not reach the server. Check your connection and try again.');
  }
  if (response.status === 401 && redirectOn401 && !path.startsWith('/api/v1/auth/')) {
    sessionExpired();
    throw new ApiError(401, 'unauthorized', 'Your session has ended. Please log in again.');
  }
  if (!response.ok) throw await readError(response);
  if (raw) return response;
  if (response.status === 204) return null;
  const text = await response.text();
  return text ? JSON.parse(text) : null;
}

async function readError(response) {
  const body = await response.json().catch(() => null);
  const err = body && body.error;
  if (err && typeof err === 'object') {
    return new ApiError(response.status, err.code, err.message || 'Request failed.', err.field, err.details || []);
  }
  if (typeof err === 'string') {
    // The 402 contract body: {"error": "Insufficient credits", "balance", "message"}.
    const message = [err, body.message].filter(Boolean).join('. ');
    return new ApiError(response.status, body.code || 'error', message);
  }
  return new ApiError(response.status, 'http_error', `Request failed (HTTP ${response.status}).`);
}

/** Pack list: public and static, fetched once. */
async function getPacks() {
  if (!state.packs) state.packs = await api('/api/v1/credits/packs');
  return state.packs;
}

/** Starts a Polar checkout and leaves the page. */
async function purchase(packId, button, autoTopup = false) {
  const body = autoTopup ? { packId, autoTopup: true } : { packId };
  let url;
  try {
    const result = await withButton(button, 'Redirecting…', () => api('/api/v1/credits/purchase', { method: 'POST', body }));
    url = new URL(result.checkoutUrl, location.href);
    if (url.protocol !== 'https:' && url.protocol !== 'http:') {
      throw new ApiError(502, 'bad_checkout_url', 'The payment provider returned an invalid checkout address.');
    }
  } catch (err) {
    if (err.code === 'payments_not_configured') setStatus('Payments are not set up on this server.', 'error');
    else showError(err);
    return;
  }
  // Stay busy while the browser leaves for the checkout page.
  button.disabled = true;
  button.textContent = 'Redirecting…';
  setStatus('Opening checkout…', 'info');
  window.location.href = url.href;
}

// ---- Session, header and low-balance banner ----

const state = {
  user: null, packs: null, credits: null, navToken: 0, returnTo: null, shown: null,
  tx: { offset: 0, limit: 10, type: '' }, topup: null, usage: null, imageUrl: null,
};

function setUser(user) {
  state.user = user;
  const loggedIn = Boolean(user);
  $('#nav').hidden = !loggedIn;
  $('#account').hidden = !loggedIn;
  $('#user-email').textContent = loggedIn ? user.email : '';
  $('#user-email').title = loggedIn ? user.email : '';
  $('#brand').setAttribute('href', loggedIn ? '/dashboard/credits' : '/dashboard/login');
  if (!loggedIn) forgetAccountData();
}

/** Clears what the previous account left on the pages, so nothing flashes for the next one. */
function forgetAccountData() {
  $('#low-banner').hidden = true;
  Object.assign(state, { credits: null, topup: null, usage: null, tx: { offset: 0, limit: 10, type: '' } });
  for (const tbody of $$('section.page tbody')) tbody.replaceChildren();
  $('#balance').textContent = '…';
  hideNewKey();
  if (state.imageUrl) URL.revokeObjectURL(state.imageUrl);
  state.imageUrl = null;
  $('#pg-image').hidden = true;
  $('#pg-image').removeAttribute('src');
  $('#pg-download').hidden = true;
  $('#pg-placeholder').hidden = false;
  $('#pg-placeholder').textContent = 'Your screenshot will appear here.';
  $('#pg-result').classList.remove('has-image');
  $('#pg-cost').textContent = '';
}

function sessionExpired() {
  if (!state.user) return;
  const here = location.pathname + location.search;
  setUser(null);
  state.returnTo = here;
  navigate('/dashboard/login', { replace: true, status: ['Your session has ended. Please log in again.', 'info'] });
}

async function logout() {
  try {
    await api('/api/v1/auth/logout', { method: 'POST' });
  } catch (err) {
    if (err.status !== 401) {
      showError(err);
      return;
    }
  }
  setUser(null);
  state.returnTo = null;
  navigate('/dashboard/login', { status: ['You have been logged out.', 'ok'] });
}

/** Fetches `/credits` and updates the low-balance banner. */
async function refreshCredits() {
  const credits = await api('/api/v1/credits');
  state.credits = credits;
  renderBanner(credits);
  return credits;
}

function renderBanner(credits) {
  const banner = $('#low-banner');
  banner.hidden = !(state.user && credits && credits.lowBalance);
  if (banner.hidden) return;
  const pack = credits.suggestedPack;
  const threshold = credits.autoTopup ? credits.autoTopup.threshold : 0;
  let text = `Your balance (${plural(credits.balance, 'credit')}) is below your threshold of ${threshold}.`;
  if (pack) text += ` Buy the ${pack.name} pack (${pack.credits.toLocaleString()} credits, ${usd(pack.priceCents)}).`;
  $('#low-banner-text').textContent = text;
  const buy = $('#low-banner-buy');
  buy.hidden = !pack;
  if (pack) {
    buy.dataset.packId = pack.id;
    buy.setAttribute('aria-label', `Buy the ${pack.name} pack`);
  }
}

// ---- Router ----

const ROUTES = {
  login: { title: 'Log in', auth: false, load: async () => {} },
  signup: { title: 'Sign up', auth: false, load: async () => {} },
  credits: { title: 'Credits', auth: true, load: loadCreditsPage, ownCredits: true },
  settings: { title: 'Settings', auth: true, load: loadSettingsPage },
  keys: { title: 'API keys', auth: true, load: loadKeysPage },
  playground: { title: 'Playground', auth: true, load: loadPlaygroundPage },
  usage: { title: 'Usage', auth: true, load: loadUsagePage },
};

function pageFromPath(pathname) {
  const match = /^\/dashboard\/?([a-z]*)\/?$/.exec(pathname);
  if (!match) return null;
  return match[1] === '' ? '' : ROUTES[match[1]] ? match[1] : null;
}

async function navigate(path, { replace = false, status = null } = {}) {
  if (replace) history.replaceState(null, '', path);
  else history.pushState(null, '', path);
  window.scrollTo(0, 0);
  await render({ focus: true, status });
}

/** Where the current URL should really go, or null when it can be shown. */
function redirectFor(page) {
  if (page === null || page === '') return state.user ? '/dashboard/credits' : '/dashboard/login';
  if (ROUTES[page].auth && !state.user) return '/dashboard/login';
  if (!ROUTES[page].auth && state.user) return '/dashboard/credits';
  return null;
}

async function render({ focus = false, status = null } = {}) {
  let page = pageFromPath(location.pathname);
  const redirect = redirectFor(page);
  if (redirect) {
    if (redirect === '/dashboard/login' && page && ROUTES[page]) state.returnTo = location.pathname + location.search;
    history.replaceState(null, '', redirect);
    page = pageFromPath(redirect);
  }
  const token = ++state.navToken;
  state.shown = location.pathname + location.search;
  delete document.body.dataset.ready;
  const route = ROUTES[page];
  showPage(page, route);
  if (status) setStatus(status[0], status[1]);
  else clearStatus();
  if (focus) $(`section[data-page="${page}"] h1`).focus();

  try {
    const tasks = [route.load()];
    if (route.auth && !route.ownCredits) tasks.push(refreshCredits());
    await Promise.all(tasks);
  } catch (err) {
    if (token === state.navToken && err.status !== 401) showError(err);
  }
  if (token === state.navToken) {
    document.body.dataset.page = page;
    document.body.dataset.ready = '1';
  }
}

function showPage(page, route) {
  for (const section of $$('section.page')) section.hidden = section.dataset.page !== page;
  document.body.classList.toggle('is-auth', !route.auth);
  document.title = `${route.title} · shotfarm`;
  for (const link of $$('.nav-link')) {
    if (link.id === `nav-${page}`) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  if (!route.auth) $('#low-banner').hidden = true;
  if (page !== 'keys') hideNewKey();
}

/** Marks the page busy while an in-page action runs (for tests waiting on data-ready). */
async function whileBusy(task) {
  const token = state.navToken;
  delete document.body.dataset.ready;
  try {
    return await task();
  } finally {
    if (token === state.navToken) document.body.dataset.ready = '1';
  }
}

/** Same-origin dashboard links navigate without reloading. */
function onLinkClick(event) {
  const link = event.target.closest('a[href]');
  if (!link || event.defaultPrevented || event.button !== 0) return;
  const hash = link.getAttribute('href');
  if (hash.startsWith('#')) {
    // In-page targets (the skip link): move focus without touching the route.
    const target = document.getElementById(hash.slice(1));
    if (target) {
      event.preventDefault();
      target.focus();
    }
    return;
  }
  if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey || link.target || link.hasAttribute('download')) return;
  const url = new URL(link.href, location.href);
  if (url.origin !== location.origin || pageFromPath(url.pathname) === null) return;
  event.preventDefault();
  if (url.pathname + url.search !== location.pathname + location.search) navigate(url.pathname + url.search);
}

// ---- Login and sign-up pages ----

const AUTH_FIELDS = {
  login: { email: 'login-email', password: 'login-password' },
  signup: { email: 'signup-email', password: 'signup-password' },
};

function initAuth() {
  $('#login-form').addEventListener('submit', (event) => submitAuth(event, 'login'));
  $('#signup-form').addEventListener('submit', (event) => submitAuth(event, 'signup'));
}

async function submitAuth(event, kind) {
  event.preventDefault();
  const form = event.currentTarget;
  if (!validateForm(form)) return;
  const ids = AUTH_FIELDS[kind];
  const body = { email: $(`#${ids.email}`).value.trim(), password: $(`#${ids.password}`).value };
  const button = $(`#${kind}-submit`);
  const busyLabel = kind === 'login' ? 'Logging in…' : 'Creating account…';
  clearStatus();
  delete document.body.dataset.ready;
  try {
    const user = await withButton(button, busyLabel, () => api(`/api/v1/auth/${kind}`, { method: 'POST', body }));
    form.reset();
    setUser(user);
    const target = (kind === 'login' && state.returnTo) || '/dashboard/credits';
    state.returnTo = null;
    const welcome = kind === 'signup'
      ? [`Welcome to shotfarm! Your account starts with ${plural(user.balance ?? 0, 'credit')}.`, 'ok']
      : null;
    await navigate(target, { status: welcome });
  } catch (err) {
    showError(err);
    markServerFields(err, ids);
    if (err.code === 'invalid_credentials') $(`#${ids.password}`).select();
    document.body.dataset.ready = '1';
  }
}

// ---- Credits page ----

function initCredits() {
  $('#packs').addEventListener('click', (event) => {
    const button = event.target.closest('button[data-pack-id]');
    if (button) purchase(button.dataset.packId, button);
  });
  $('#low-banner-buy').addEventListener('click', (event) => {
    const button = event.currentTarget;
    if (button.dataset.packId) purchase(button.dataset.packId, button, true);
  });
  $('#tx-type').addEventListener('change', (event) => {
    state.tx.type = event.target.value;
    state.tx.offset = 0;
    reloadTransactions();
  });
  $('#tx-prev').addEventListener('click', () => {
    state.tx.offset = Math.max(0, state.tx.offset - state.tx.limit);
    reloadTransactions();
  });
  $('#tx-next').addEventListener('click', () => {
    state.tx.offset += state.tx.limit;
    reloadTransactions();
  });
}

async function loadCreditsPage() {
  const params = new URLSearchParams(location.search);
  $('#checkout-notice').hidden = params.get('checkout') !== 'success';
  state.tx = { offset: 0, limit: 10, type: '' };
  $('#tx-type').value = '';
  const [credits, packs] = await Promise.all([refreshCredits(), getPacks(), loadTransactions()]);
  renderBalance(credits, packs);
  renderPacks(packs);
}

function renderBalance(credits, packs) {
  $('#balance').textContent = String(credits.balance);
  $('#balance-meta').textContent = credits.reserved > 0
    ? `${plural(credits.reserved, 'credit')} reserved for captures in progress.`
    : 'Used by each screenshot you capture.';
  const topup = credits.autoTopup || {};
  const pack = packs.find((p) => p.id === topup.packId);
  $('#topup-summary').textContent = topup.enabled
    ? `On — we prompt you to buy ${pack ? `the ${pack.name} pack` : 'a pack'} when your balance drops below ${plural(topup.threshold, 'credit')}.`
    : 'Off — turn it on to get a reminder before you run out.';
}

function renderPacks(packs) {
  const container = $('#packs');
  container.replaceChildren(...packs.map(packCard));
  container.removeAttribute('aria-busy');
}

function packCard(pack) {
  const headerChildren = [h('h3', { class: 'pack-name', text: pack.name })];
  if (pack.isPopular) headerChildren.push(h('span', { class: 'badge badge-popular', text: 'Most popular' }));
  return h('article', { class: pack.isPopular ? 'card pack pack-popular' : 'card pack' }, [
    h('div', { class: 'pack-head' }, headerChildren),
    h('p', { class: 'pack-credits' }, [h('strong', { text: pack.credits.toLocaleString() }), ' credits']),
    h('p', { class: 'pack-price', text: usd(pack.priceCents) }),
    h('p', { class: 'pack-unit muted', text: `${perCredit(pack)} per credit` }),
    h('button', {
      type: 'button',
      id: `buy-${pack.id}`,
      class: pack.isPopular ? 'btn btn-primary btn-block' : 'btn btn-secondary btn-block',
      'data-pack-id': pack.id,
      'aria-label': `Buy ${pack.name}: ${pack.credits.toLocaleString()} credits for ${usd(pack.priceCents)}`,
      text: 'Buy',
    }),
  ]);
}

function reloadTransactions() {
  whileBusy(loadTransactions).catch((err) => {
    if (err.status !== 401) showError(err);
  });
}

async function loadTransactions() {
  const { offset, limit, type } = state.tx;
  const tbody = $('#tx-table tbody');
  $('#tx-prev').disabled = true;
  $('#tx-next').disabled = true;
  if (!tbody.querySelector('.tx-row')) tbody.replaceChildren(messageRow(5, 'Loading transactions…'));
  $('#tx-table').setAttribute('aria-busy', 'true');
  let query = `limit=${limit}&offset=${offset}`;
  if (type) query += `&type=${encodeURIComponent(type)}`;
  try {
    const data = await api(`/api/v1/credits/transactions?${query}`);
    renderTransactions(data);
  } finally {
    $('#tx-table').removeAttribute('aria-busy');
  }
}

function renderTransactions(data) {
  const rows = data.transactions || [];
  const tbody = $('#tx-table tbody');
  const empty = state.tx.type ? `No ${TX_TYPES[state.tx.type].toLowerCase()} transactions yet` : 'No transactions yet';
  tbody.replaceChildren(...(rows.length ? rows.map(txRow) : [messageRow(5, empty)]));
  const total = data.total || 0;
  const offset = data.offset ?? state.tx.offset;
  const last = offset + rows.length;
  $('#tx-range').textContent = rows.length ? `${offset + 1}–${last} of ${total}` : `0 of ${total}`;
  $('#tx-prev').disabled = offset <= 0;
  $('#tx-next').disabled = last >= total;
}

function txRow(tx) {
  const positive = tx.amount > 0;
  const amount = positive ? `+${tx.amount}` : String(tx.amount);
  const tone = positive ? 'amount-plus' : tx.amount < 0 ? 'amount-minus' : '';
  return h('tr', { class: 'tx-row', 'data-type': tx.type }, [
    h('td', { class: 'c-date', text: formatDateTime(tx.timestamp) }),
    h('td', { class: 'c-type' }, [
      h('span', { class: `badge badge-${tx.type}`, text: TX_TYPES[tx.type] || tx.type }),
    ]),
    h('td', { class: 'c-desc', title: tx.description || null }, [
      h('span', { class: 'clamp-2', text: tx.description || '—' }),
    ]),
    h('td', { class: `num c-amount ${tone}`, text: amount }),
    h('td', { class: 'num c-bal', text: String(tx.balanceAfter) }),
  ]);
}

function messageRow(columns, text) {
  return h('tr', { class: 'message-row' }, [h('td', { colspan: columns, text })]);
}

// ---- Settings page ----

const TOPUP_FIELDS = { enabled: 'topup-enabled', threshold: 'topup-threshold', packId: 'topup-pack', notificationUrl: 'notify-url' };

function initSettings() {
  $('#topup-form').addEventListener('submit', saveTopup);
  $('#notify-secret-copy').addEventListener('click', (event) => copyFrom($('#notify-secret'), event.currentTarget));
}

async function loadSettingsPage() {
  $('#account-email').textContent = state.user.email;
  $('#account-created').textContent = formatDate(state.user.createdAt);
  const [settings, packs] = await Promise.all([api('/api/v1/credits/auto-topup'), getPacks()]);
  fillPackSelect(packs);
  renderTopup(settings);
}

function fillPackSelect(packs) {
  const select = $('#topup-pack');
  const label = (pack) => `${pack.name} — ${pack.credits.toLocaleString()} credits, ${usd(pack.priceCents)}`;
  const options = packs.map((pack) => h('option', { value: pack.id, text: label(pack) }));
  select.replaceChildren(h('option', { value: '', text: 'Choose a pack' }), ...options);
}

function renderTopup(settings) {
  state.topup = settings;
  clearInvalid($('#topup-form'));
  $('#topup-enabled').checked = Boolean(settings.enabled);
  $('#topup-threshold').value = settings.threshold > 0 ? String(settings.threshold) : '';
  $('#topup-pack').value = settings.packId || '';
  $('#notify-url').value = settings.notificationUrl || '';
  $('#notify-secret').textContent = settings.notificationSecret || '';
  $('#notify-secret-block').hidden = !settings.notificationSecret;
}

/** Only the fields the user changed are sent (the API accepts any subset). */
function topupChanges() {
  const saved = state.topup || {};
  const changes = { enabled: $('#topup-enabled').checked };
  const threshold = $('#topup-threshold').value.trim();
  if (threshold !== '' && Number(threshold) !== saved.threshold) changes.threshold = Number(threshold);
  const packId = $('#topup-pack').value;
  if (packId && packId !== saved.packId) changes.packId = packId;
  const url = $('#notify-url').value.trim();
  if (url !== (saved.notificationUrl || '')) changes.notificationUrl = url === '' ? null : url;
  return changes;
}

function checkTopup(changes) {
  if (!changes.enabled) return true;
  const problem = !$('#topup-threshold').value.trim()
    ? ['topup-threshold', 'Set a threshold of at least 1 credit to enable auto top-up.']
    : !$('#topup-pack').value
      ? ['topup-pack', 'Choose the pack to buy when your balance is low.']
      : null;
  if (!problem) return true;
  const input = document.getElementById(problem[0]);
  input.setAttribute('aria-invalid', 'true');
  setStatus(problem[1], 'error');
  input.focus();
  return false;
}

async function saveTopup(event) {
  event.preventDefault();
  const form = event.currentTarget;
  if (!validateForm(form)) return;
  const changes = topupChanges();
  if (!checkTopup(changes)) return;
  clearStatus();
  try {
    await whileBusy(() =>
      withButton($('#topup-save'), 'Saving…', async () => {
        const updated = await api('/api/v1/credits/auto-topup', { method: 'PUT', body: changes });
        renderTopup(updated);
        setStatus('Auto top-up settings saved.', 'ok');
        await refreshCredits();
      }),
    );
  } catch (err) {
    if (err.code === 'url_not_allowed') setStatus(err.message || 'That notification URL is not allowed.', 'error');
    else showError(err);
    markServerFields(err, TOPUP_FIELDS);
  }
}

// ---- API keys page ----

function initKeys() {
  $('#key-form').addEventListener('submit', createKey);
  $('#new-key-copy').addEventListener('click', (event) => copyFrom($('#new-key-secret'), event.currentTarget));
  $('#new-key-dismiss').addEventListener('click', hideNewKey);
  $('#new-signing-copy').addEventListener('click', (event) => copyFrom($('#new-signing-secret'), event.currentTarget));
  $('#new-signing-dismiss').addEventListener('click', hideNewSigning);
  $('#keys-table tbody').addEventListener('click', onKeyTableClick);
}

async function loadKeysPage() {
  hideNewKey();
  const tbody = $('#keys-table tbody');
  if (!tbody.querySelector('.key-row')) tbody.replaceChildren(messageRow(6, 'Loading keys…'));
  const data = await api('/api/v1/keys');
  renderKeys(data.keys || []);
}

function hideNewKey() {
  $('#new-key').hidden = true;
  $('#new-key-secret').textContent = '';
  hideNewSigning();
}

function hideNewSigning() {
  $('#new-signing').hidden = true;
  $('#new-signing-secret').textContent = '';
  $('#new-signing-key-id').textContent = '';
}

function renderKeys(keys) {
  const tbody = $('#keys-table tbody');
  if (!keys.length) {
    tbody.replaceChildren(messageRow(6, 'No API keys yet. Create one above to start calling the API.'));
    return;
  }
  tbody.replaceChildren(...keys.map(keyRow));
}

function keyRow(key) {
  return h('tr', { class: 'key-row', 'data-id': key.id, 'data-signing-since': key.signingSecretCreatedAt || '' }, [
    h('td', { class: 'c-name', text: key.name }),
    h('td', { class: 'c-prefix' }, [h('code', { text: `${key.prefix}…` })]),
    h('td', { class: 'c-created', text: formatDateTime(key.createdAt) }),
    h('td', { class: 'c-used', text: key.lastUsedAt ? formatDateTime(key.lastUsedAt) : 'Never' }),
    h('td', { class: 'c-signing' }, signingCell(key.name, key.signingSecretCreatedAt)),
    h('td', { class: 'c-actions' }, [revokeButton(key)]),
  ]);
}

// A key's signing secret (signed image links): since when it has one, and the buttons to make,
// replace or revoke it. Replacing and revoking end the links signed so far: both ask first.
function signingCell(name, since) {
  const state = h('span', { class: 'signing-state', text: since ? `Since ${formatDateTime(since)}` : 'None' });
  const make = h('button', {
    type: 'button',
    class: `btn btn-secondary btn-sm ${since ? 'signing-ask-rotate' : 'signing-make'}`,
    'aria-label': `${since ? 'Replace' : 'Make'} the signing secret of key ${name}`,
    text: since ? 'Replace' : 'Make secret',
  });
  const parts = [state, make];
  if (since) {
    parts.push(h('button', {
      type: 'button',
      class: 'btn btn-danger-outline btn-sm signing-ask-revoke',
      'aria-label': `Revoke the signing secret of key ${name}`,
      text: 'Revoke secret',
    }));
  }
  return [h('span', { class: 'signing' }, parts)];
}

function askSigning(row, action) {
  const question = action === 'rotate' ? 'Replace? Links signed so far stop working.' : 'Revoke? Links signed so far stop working.';
  const yes = h('button', {
    type: 'button',
    class: `btn btn-danger btn-sm ${action === 'rotate' ? 'signing-make' : 'signing-revoke'}`,
    'aria-label': `Yes, ${action === 'rotate' ? 'replace' : 'revoke'} the signing secret of key ${keyName(row)}`,
    text: 'Yes',
  });
  const no = h('button', { type: 'button', class: 'btn btn-secondary btn-sm signing-cancel', text: 'Cancel' });
  $('.c-signing', row).replaceChildren(h('span', { class: 'confirm' }, [h('span', { class: 'confirm-text', text: question }), yes, no]));
  no.focus();
}

function resetSigning(row, since) {
  $('.c-signing', row).replaceChildren(...signingCell(keyName(row), since));
  row.dataset.signingSince = since || '';
}

async function makeSigningSecret(row, button) {
  const name = keyName(row);
  for (const b of $$('button', row)) b.disabled = true;
  button.textContent = 'Making…';
  try {
    const made = await whileBusy(() => api(`/api/v1/keys/${encodeURIComponent(row.dataset.id)}/signing-secret`, { method: 'POST' }));
    resetSigning(row, made.createdAt);
    hideNewKey();
    $('#new-signing-secret').textContent = made.signingSecret;
    $('#new-signing-key-id').textContent = made.keyId;
    $('#new-signing').hidden = false;
    setStatus(`Made a signing secret for key “${name}”. Copy it now: you will not see it again.`, 'ok');
    $('#new-signing-copy').focus();
  } catch (err) {
    showError(err);
    if (row.isConnected) resetSigning(row, row.dataset.signingSince);
  } finally {
    for (const b of $$('button', row)) b.disabled = false;
  }
}

async function revokeSigningSecret(row, button) {
  const name = keyName(row);
  for (const b of $$('button', row)) b.disabled = true;
  button.textContent = 'Revoking…';
  try {
    await whileBusy(() => api(`/api/v1/keys/${encodeURIComponent(row.dataset.id)}/signing-secret`, { method: 'DELETE' }));
    resetSigning(row, '');
    hideNewSigning();
    setStatus(`Revoked the signing secret of key “${name}”: its signed links no longer work.`, 'ok');
  } catch (err) {
    showError(err);
    if (row.isConnected) resetSigning(row, row.dataset.signingSince);
  } finally {
    for (const b of $$('button', row)) b.disabled = false;
  }
}

function revokeButton(key) {
  const attrs = { type: 'button', class: 'btn btn-danger-outline btn-sm key-revoke', 'aria-label': `Revoke key ${key.name}` };
  return h('button', { ...attrs, text: 'Revoke' });
}

function onKeyTableClick(event) {
  const button = event.target.closest('button');
  const row = button && button.closest('tr.key-row');
  if (!row) return;
  if (button.classList.contains('signing-make')) makeSigningSecret(row, button);
  else if (button.classList.contains('signing-ask-rotate')) askSigning(row, 'rotate');
  else if (button.classList.contains('signing-ask-revoke')) askSigning(row, 'revoke');
  else if (button.classList.contains('signing-revoke')) revokeSigningSecret(row, button);
  else if (button.classList.contains('signing-cancel')) resetSigning(row, row.dataset.signingSince);
  else if (button.classList.contains('key-revoke')) askRevoke(row);
  else if (button.classList.contains('key-revoke-no')) cancelRevoke(row);
  else if (button.classList.contains('key-revoke-yes')) confirmRevoke(row, button);
}

function keyName(row) {
  return $('.c-name', row).textContent;
}

function askRevoke(row) {
  const yesLabel = `Yes, revoke key ${keyName(row)}`;
  const yes = h('button', { type: 'button', class: 'btn btn-danger btn-sm key-revoke-yes', 'aria-label': yesLabel, text: 'Yes' });
  const no = h('button', { type: 'button', class: 'btn btn-secondary btn-sm key-revoke-no', text: 'Cancel' });
  const prompt = h('span', { class: 'confirm-text', text: 'Revoke?' });
  $('.c-actions', row).replaceChildren(h('span', { class: 'confirm' }, [prompt, yes, no]));
  no.focus();
}

function cancelRevoke(row) {
  const button = revokeButton({ name: keyName(row) });
  $('.c-actions', row).replaceChildren(button);
  button.focus();
}

async function confirmRevoke(row, button) {
  const name = keyName(row);
  for (const b of $$('button', row)) b.disabled = true;
  button.textContent = 'Revoking…';
  try {
    await whileBusy(() => api(`/api/v1/keys/${encodeURIComponent(row.dataset.id)}`, { method: 'DELETE' }));
    row.remove();
    if (!$('#keys-table tbody .key-row')) renderKeys([]);
    setStatus(`Revoked key “${name}”.`, 'ok');
    $('#keys-title').focus();
  } catch (err) {
    showError(err);
    if (row.isConnected) cancelRevoke(row);
  }
}

async function createKey(event) {
  event.preventDefault();
  const form = event.currentTarget;
  if (!validateForm(form)) return;
  const name = $('#key-name').value.trim();
  clearStatus();
  try {
    await whileBusy(() =>
      withButton($('#key-create'), 'Creating…', async () => {
        const created = await api('/api/v1/keys', { method: 'POST', body: { name } });
        form.reset();
        $('#new-key-secret').textContent = created.key;
        $('#new-key').hidden = false;
        setStatus(`Created key “${created.name}”. Copy the secret now: you will not see it again.`, 'ok');
        const list = await api('/api/v1/keys');
        renderKeys(list.keys || []);
      }),
    );
    $('#new-key-copy').focus();
  } catch (err) {
    showError(err);
    markServerFields(err, { name: 'key-name' });
  }
}

// ---- Playground page ----

const PG_FIELDS = {
  url: 'pg-url', format: 'pg-format', width: 'pg-width', height: 'pg-height', full_page: 'pg-full-page',
  dark_mode: 'pg-dark-mode', delay: 'pg-delay', wait_until: 'pg-wait-until', selector: 'pg-selector',
  html: 'pg-html',
};
// The "More options" fields name their option themselves (`data-option`, `data-kind`).
for (const el of document.querySelectorAll('#pg-form [data-option]')) PG_FIELDS[el.dataset.option] = el.id;

function initPlayground() {
  const form = $('#pg-form');
  form.addEventListener('submit', capture);
  form.addEventListener('input', updateCurl);
  form.addEventListener('change', updateCurl);
  $('#pg-curl-copy').addEventListener('click', (event) => copyFrom($('#pg-curl'), event.currentTarget));
  updateCurl();
}

async function loadPlaygroundPage() {
  updateCurl();
}

/** Adds `https://` when the user typed a bare host name. */
function normalizeUrl(raw) {
  const url = raw.trim();
  if (url === '' || /^[a-z][a-z0-9+.-]*:/i.test(url)) return url;
  return `https://${url}`;
}

/** The form as the JSON body of `POST /api/v1/screenshot` (an empty selector is left out). */
function playgroundOptions() {
  const int = (id, fallback) => {
    const value = Number.parseInt($(`#${id}`).value, 10);
    return Number.isFinite(value) ? value : fallback;
  };
  const options = {
    url: normalizeUrl($('#pg-url').value),
    format: $('#pg-format').value,
    width: int('pg-width', 1280),
    height: int('pg-height', 800),
    full_page: $('#pg-full-page').checked,
    dark_mode: $('#pg-dark-mode').checked,
    allow_http_errors: $('#pg-allow-http-errors').checked,
    delay: int('pg-delay', 0),
    wait_until: $('#pg-wait-until').value,
  };
  const selector = $('#pg-selector').value.trim();
  if (selector) options.selector = selector;
  // "More options": only what was set is sent.
  for (const el of document.querySelectorAll('#pg-form [data-option]')) {
    const name = el.dataset.option;
    const raw = el.type === 'checkbox' ? null : el.value.trim();
    switch (el.dataset.kind) {
      case 'bool': if (el.checked) options[name] = true; break;
      case 'int': if (raw !== '') options[name] = Number.parseInt(raw, 10); break;
      case 'float': if (raw !== '') options[name] = Number.parseFloat(raw); break;
      case 'list': {
        const items = raw.split('\n').map((s) => s.trim()).filter(Boolean);
        if (items.length) options[name] = items;
        break;
      }
      default: if (raw !== '') options[name] = raw;
    }
  }
  const html = $('#pg-html').value;
  if (html.trim()) {
    options.html = html;
    delete options.url;
  }
  return options;
}

/** Percent-encodes everything but unreserved characters, so the result is safe in shell quotes. */
const encodeParam = (value) =>
  encodeURIComponent(String(value)).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);

function curlCommand(options) {
  const ext = options.format === 'jpeg' ? 'jpg' : options.format;
  if (options.html !== undefined) {
    // Markup goes in a JSON body (single quotes in it are closed and reopened for the shell).
    const body = JSON.stringify(options).replace(/'/g, "'\\''");
    return [
      `curl "${location.origin}/api/v1/screenshot" \\`,
      '  -H "x-api-key: YOUR_API_KEY" -H "content-type: application/json" \\',
      `  -d '${body}' \\`,
      `  -o screenshot.${ext}`,
    ].join('\n');
  }
  const params = [
    ['url', options.url || 'https://example.com'],
    ['format', options.format],
    ['width', options.width],
    ['height', options.height],
  ];
  if (options.full_page) params.push(['full_page', 'true']);
  if (options.dark_mode) params.push(['dark_mode', 'true']);
  if (options.allow_http_errors) params.push(['allow_http_errors', 'true']);
  if (options.delay > 0) params.push(['delay', options.delay]);
  if (options.wait_until !== 'load') params.push(['wait_until', options.wait_until]);
  if (options.selector) params.push(['selector', options.selector]);
  for (const el of document.querySelectorAll('#pg-form [data-option]')) {
    const value = options[el.dataset.option];
    if (value === undefined) continue;
    for (const item of Array.isArray(value) ? value : [value]) params.push([el.dataset.option, item]);
  }
  const query = params.map(([key, value]) => `${key}=${encodeParam(value)}`).join('&');
  return [
    `curl "${location.origin}/api/v1/screenshot?${query}" \\`,
    '  -H "x-api-key: YOUR_API_KEY" \\',
    `  -o screenshot.${ext}`,
  ].join('\n');
}

function updateCurl() {
  $('#pg-curl').textContent = curlCommand(playgroundOptions());
}

async function capture(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const urlInput = $('#pg-url');
  urlInput.value = normalizeUrl(urlInput.value);
  // Supplied markup replaces the page URL.
  urlInput.required = $('#pg-html').value.trim() === '';
  if (!validateForm(form)) return;
  const options = playgroundOptions();
  updateCurl();
  clearStatus();
  const result = $('#pg-result');
  result.setAttribute('aria-busy', 'true');
  $('#pg-placeholder').textContent = 'Capturing…';
  try {
    await whileBusy(() =>
      withButton($('#pg-submit'), 'Capturing…', async () => {
        const response = await api('/api/v1/screenshot', { method: 'POST', body: options, raw: true });
        const blob = await response.blob();
        showCapture(blob, options, response.headers.get('x-credits-remaining'));
        setStatus('Screenshot captured.', 'ok');
        await refreshCredits().catch(() => null);
      }),
    );
  } catch (err) {
    $('#pg-placeholder').textContent = `Capture failed: ${err.message}`;
    showError(err);
    markServerFields(err, PG_FIELDS);
  } finally {
    result.removeAttribute('aria-busy');
  }
}

function showCapture(blob, options, remaining) {
  if (state.imageUrl) URL.revokeObjectURL(state.imageUrl);
  state.imageUrl = URL.createObjectURL(blob);
  const image = $('#pg-image');
  const pdf = blob.type === 'application/pdf';
  if (pdf) {
    // A PDF is not shown inline: it is offered for download.
    image.hidden = true;
    $('#pg-placeholder').textContent = 'PDF captured: download it below.';
    $('#pg-placeholder').hidden = false;
  } else {
    image.src = state.imageUrl;
    image.alt = `Screenshot of ${options.url || 'the supplied HTML'}`;
    image.hidden = false;
    $('#pg-placeholder').hidden = true;
  }
  $('#pg-result').classList.add('has-image');
  const download = $('#pg-download');
  download.href = state.imageUrl;
  download.setAttribute('download', `screenshot.${options.format === 'jpeg' ? 'jpg' : options.format}`);
  download.hidden = false;
  const left = remaining === null || remaining === '' ? null : Number(remaining);
  $('#pg-cost').textContent = Number.isFinite(left) ? `Cost 1 credit · ${plural(left, 'credit')} left` : 'Cost 1 credit';
}

// ---- Usage page ----

function initUsage() {
  let timer = null;
  window.addEventListener('resize', () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      if (state.usage && !$('section[data-page="usage"]').hidden) renderChart(state.usage.days);
    }, 150);
  });
}

async function loadUsagePage() {
  const data = await api('/api/v1/credits/usage?days=30');
  state.usage = data;
  const days = data.days || [];
  const total = data.total ?? days.reduce((sum, d) => sum + d.captures, 0);
  $('#usage-total').textContent = String(total);
  $('#usage-total-label').textContent = `${total === 1 ? 'capture' : 'captures'} in the last 30 days`;
  $('#usage-empty').hidden = days.some((d) => d.captures > 0);
  renderChart(days);
  renderUsageTable(days);
}

/** A round axis maximum at or above `max` (1, 2, 5, 10, 15, 20, 25, 30, 40, 50, …). */
function niceMax(max) {
  if (max <= 0) return 1;
  const magnitude = 10 ** Math.floor(Math.log10(max));
  const step = [1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10].find((f) => f * magnitude >= max);
  return Math.max(1, Math.ceil(step * magnitude));
}

function renderChart(days) {
  const svg = $('#usage-chart');
  const width = Math.max(280, Math.floor($('#usage-chart-wrap').clientWidth));
  const narrow = width < 500;
  const height = narrow ? 200 : 240;
  const m = { top: 12, right: narrow ? 18 : 24, bottom: 28, left: narrow ? 28 : 40 };
  svg.classList.toggle('chart-narrow', narrow);
  const plotW = width - m.left - m.right;
  const plotH = height - m.top - m.bottom;
  const yMax = niceMax(Math.max(0, ...days.map((d) => d.captures)));
  const slot = plotW / Math.max(1, days.length);
  const baseY = m.top + plotH;
  svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
  svg.setAttribute('width', width);
  svg.setAttribute('height', height);

  const nodes = [
    s('line', { class: 'grid', x1: m.left, x2: width - m.right, y1: m.top, y2: m.top }),
    s('line', { class: 'grid', x1: m.left, x2: width - m.right, y1: m.top + plotH / 2, y2: m.top + plotH / 2 }),
    s('text', { class: 'axis-label', x: m.left - 6, y: m.top + 4, 'text-anchor': 'end' }, [String(yMax)]),
    s('text', { class: 'axis-label', x: m.left - 6, y: baseY + 4, 'text-anchor': 'end' }, ['0']),
  ];
  days.forEach((day, i) => {
    nodes.push(chartBar(day, m.left + i * slot, slot, baseY, plotH, yMax, m.top));
    if ((days.length - 1 - i) % 5 === 0) {
      nodes.push(s('text', { class: 'axis-label', x: m.left + (i + 0.5) * slot, y: height - 8, 'text-anchor': 'middle' }, [formatDay(day.date)]));
    }
  });
  nodes.push(s('line', { class: 'baseline', x1: m.left, x2: width - m.right, y1: baseY, y2: baseY }));
  svg.replaceChildren(...nodes);
}

function chartBar(day, x, slot, baseY, plotH, yMax, top) {
  const barW = Math.max(2, slot * 0.68);
  const barH = day.captures > 0 ? Math.max(2, (day.captures / yMax) * plotH) : 0;
  const label = `${formatDay(day.date, { weekday: 'short', month: 'short', day: 'numeric' })}: ${plural(day.captures, 'capture')}`;
  return s('g', { class: 'bar-group' }, [
    s('title', {}, [label]),
    s('rect', { class: 'bar-hit', x, y: top, width: slot, height: plotH }),
    s('rect', { class: 'bar', x: x + (slot - barW) / 2, y: baseY - barH, width: barW, height: barH, rx: Math.min(3, barW / 3) }),
  ]);
}

function renderUsageTable(days) {
  const rows = days.map((day) =>
    h('tr', {}, [
      h('td', { text: formatDay(day.date, { year: 'numeric', month: 'short', day: 'numeric' }) }),
      h('td', { class: 'num', text: String(day.captures) }),
    ]),
  );
  $('#usage-table tbody').replaceChildren(...(rows.length ? rows : [messageRow(2, 'No data')]));
}

// ---- Start-up ----

async function start() {
  document.addEventListener('click', onLinkClick);
  window.addEventListener('popstate', () => {
    if (location.pathname + location.search !== state.shown) render({ focus: true });
  });
  $('#logout').addEventListener('click', logout);
  $('#status-close').addEventListener('click', clearStatus);
  initAuth();
  initCredits();
  initSettings();
  initKeys();
  initPlayground();
  initUsage();

  let user = null;
  try {
    user = await api('/api/v1/me', { redirectOn401: false });
  } catch (err) {
    if (err.status !== 401) showError(err);
  }
  const startupError = $('#status').textContent ? [$('#status').textContent, 'error'] : null;
  setUser(user);
  await render({ focus: false, status: startupError });
}

start();

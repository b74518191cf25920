/* troth consent banner and preference panel; contract in README.md */
(() => {
  'use strict';
  const w = window, d = document, C = w.trothConfig || {}, T = C.texts || {}, L = C.links || {};
  const J = C.jurisdiction || {}, K = C.cookie || {}, CM = C.consentMode || {}, CATS = C.categories || [];
  const EV = C.events || {}, TECH = EV.techs || {};
  const byId = {}, opt = CATS.filter(c => !c.required);
  CATS.forEach(c => { byId[c.id] = c; });
  w.dataLayer = w.dataLayer || [];
  if (typeof w.gtag != 'function') w.gtag = function () { w.dataLayer.push(arguments); };
  const signals = f => {
    const o = {};
    for (const k in CM) o[k] = CM[k].length && CM[k].every(f) ? 'granted' : 'denied';
    return o;
  };
  w.gtag('consent', 'default', Object.assign(signals(id => byId[id] && byId[id].required), { wait_for_update: 500 }));

  const gpcOn = navigator.globalPrivacyControl === true;
  const gpc = gpcOn && J.gpc ? J.gpcRefuses || [] : [];
  const optIn = J.model != 'opt_out' && J.model != 'notice';
  const enc = encodeURIComponent, st = {};
  let vid, kept, dlg, view, back, toast, timer, hooks = [], queue = [], out = [], warned = {};

  if (w.trothCss) (d.head || d.documentElement).append(E('style', { id: 'troth-css' }, w.trothCss));
  try {
    const p = (d.cookie.split('; ').find(s => s.startsWith(K.name + '=')) || '').slice(K.name.length + 1).split('.');
    if (p[0] == 'v1' && /^[\w-]{22}$/.test(p[1]) && p.length > 3) {
      kept = vid = p[1];
      p[p.length - 1].split('~').forEach(x => {
        x = x.split(':');
        const c = byId[decodeURIComponent(x[0])];
        if (c && !c.required && +x[2] >= (c.revision || 0)) st[c.id] = x[1] == '1';
      });
    }
  } catch (e) {}
  if (!vid) {
    vid = btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(16))))
      .replace(/\+/g, '-').replace(/\//g, '_').slice(0, 22);
  }

  function E(t, a, ...kids) {
    const e = d.createElement(t);
    for (const n in a) if (a[n] != null && a[n] !== false) e.setAttribute(n, a[n] === true ? '' : a[n]);
    e.append(...kids.filter(k => k != null));
    return e;
  }
  const ok = id => {
    const c = byId[id];
    return !c ? null : c.required ? true : gpc.includes(id) ? false : id in st ? st[id] : optIn ? null : true;
  };
  const on = id => ok(id) === true;
  const need = () => opt.some(c => !gpc.includes(c.id) && !(c.id in st));
  const update = () => w.gtag('consent', 'update', signals(on));
  const ready = f => (d.readyState == 'loading' ? d.addEventListener('DOMContentLoaded', f) : f());
  const say = (e, t) => e && (e.textContent = t);

  const host = location.hostname, doms = [];
  if (/[a-z]/i.test(host) && host.includes('.') && !host.includes(':')) {
    const h = host.split('.');
    for (let i = 0; i < h.length - 1; i++) doms.push('.' + h.slice(i).join('.'));
  }
  const purge = id => (byId[id].cookies || []).forEach(k => {
    const re = new RegExp('^' + k.name.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*') + '$');
    const hit = n => (k.glob ? re.test(n) : n == k.name);
    d.cookie.split('; ').map(s => s.split('=')[0]).filter(hit).forEach(n =>
      [''].concat(k.domain || [], doms).forEach(x => {
        d.cookie = n + '=;max-age=0;path=' + (k.path || '/') + (x ? ';domain=' + x : '');
      }));
    try { Object.keys(localStorage).filter(hit).forEach(n => localStorage.removeItem(n)); } catch (e) {}
  });

  const postJSON = (url, o) => fetch(url, {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, credentials: 'same-origin', keepalive: true,
    body: JSON.stringify(o),
  });
  // events: [category, event]; re-checked when sent, so a withdrawal drops what is pending
  const post = beacon => {
    clearTimeout(timer);
    timer = 0;
    const o = { events: out.filter(x => on(x[0])).map(x => x[1]), visitor: kept ? vid : undefined, jurisdiction: J.id };
    out = [];
    if (!o.events.length) return;
    if (!(beacon && navigator.sendBeacon &&
      navigator.sendBeacon(EV.url, new Blob([JSON.stringify(o)], { type: 'application/json' })))) postJSON(EV.url, o).catch(() => {});
  };
  const send = x => (out.push(x) >= 10 ? post() : timer || (timer = setTimeout(post, 1000)));
  const warn = m => warned[m] || (warned[m] = 1, console.warn('troth: ' + m));
  const track = (t, n, p) => {
    const c = TECH[t], a = byId[c] && ok(c);
    if (a === undefined) return warn('unknown tracking technology ' + t);
    if (!/^[a-z][a-z0-9_]{0,63}$/.test(n)) return warn('bad event name ' + n);
    const x = [c, { tech: t, name: n, campaign: '', page: location.pathname, props: Object.assign({}, p) }];
    if (a) send(x);
    else if (a === null && queue.push(x) > 50) queue.shift();
  };

  const flush = () => {
    const due = hooks.filter(h => on(h[0]));
    hooks = hooks.filter(h => !on(h[0]));
    due.forEach(h => h[1]());
  };
  const allowed = o => o.dataset.category.split(/\s+/).every(on);
  const run = () => {
    d.querySelectorAll('script[type="text/plain"][data-category]').forEach(o => {
      if (!allowed(o)) return;
      const n = d.createElement('script');
      for (const a of o.attributes) if (a.name != 'type') n.setAttribute(a.name, a.value);
      if (o.dataset.type) n.type = o.dataset.type;
      if (!o.hasAttribute('async')) n.async = false;
      n.nonce = o.nonce;
      n.text = o.text;
      n.dataset.troth = 'ran';
      o.replaceWith(n);
    });
    d.querySelectorAll('[data-src][data-category]').forEach(o => {
      if (allowed(o)) { o.src = o.dataset.src; o.removeAttribute('data-src'); }
    });
    flush();
  };

  const cats = pre => E('fieldset', { class: 'troth-cats' }, E('legend', null, T.preferences), ...CATS.map(c => {
    const id = 'troth-' + pre + '-' + c.id, g = gpc.includes(c.id), note = c.required ? T.alwaysOn : g ? T.gpcNote : null;
    return E('div', { class: 'troth-cat' },
      E('div', { class: 'troth-row' },
        E('input', { type: 'checkbox', role: 'switch', id, 'data-c': c.id, checked: on(c.id), disabled: c.required || g, 'aria-describedby': id + '-d' }),
        E('label', { for: id }, c.name)),
      E('p', { id: id + '-d' }, c.description, note && ' ', note && E('strong', null, note)));
  }));
  const picked = root => id => {
    const i = [...root.querySelectorAll('[data-c]')].find(x => x.dataset.c == id);
    return i ? i.checked : on(id);
  };
  const sync = () => d.querySelectorAll('.troth [data-c]').forEach(i => { i.checked = on(i.dataset.c); });

  const choose = (f, method, box) => {
    const choices = {}, consents = {};
    opt.forEach(c => {
      st[c.id] = !gpc.includes(c.id) && !!f(c.id);
      choices[c.id] = st[c.id] ? 'given' : 'refused';
    });
    d.cookie = K.name + '=v1.' + vid + '.' + enc(C.policyVersion) + '.' +
      opt.map(c => enc(c.id) + ':' + (st[c.id] ? 1 : 0) + ':' + (c.revision || 0)).join('~') +
      ';max-age=' + (K.days || 365) * 86400 + ';path=' + (K.path || '/') + (K.domain ? ';domain=' + K.domain : '') +
      ';SameSite=Lax' + (location.protocol == 'https:' ? ';Secure' : '');
    kept = 1;
    update();
    run();
    opt.forEach(c => st[c.id] || purge(c.id));
    close();
    sync();
    say(box || toast, '');
    CATS.forEach(c => { consents[c.id] = on(c.id); });
    d.dispatchEvent(new CustomEvent('troth:consent', { detail: { consents } }));
    postJSON(C.api, { subject: vid, choices, method, language: C.lang, policy_version: C.policyVersion, jurisdiction: J.id, gpc: gpcOn })
      .then(r => { if (!r.ok) throw r; return r.json(); })
      .then(j => { api.lastReceipt = j.receipt; say(box, T.saved); }, () => say(box || toast, T.error));
    // queued events: sent if now allowed, else dropped for good
    queue.forEach(x => on(x[0]) && send(x));
    queue = [];
  };

  const B = (a, t, cls) => E('button', { type: 'button', class: cls || 'troth-p', 'data-a': a }, t);
  const render = (cust, focus) => {
    view = cust;
    dlg.textContent = '';
    dlg.append(E('div', { class: 'troth-in' },
      E('h2', { id: 'troth-title' }, T.title),
      E('p', { id: 'troth-body' }, T.body, ' ', E('a', { href: L.policy }, T.policy)),
      cust ? cats('b') : null,
      E('div', { class: 'troth-btns' }, B('reject', T.rejectAll), B('accept', T.acceptAll),
        cust ? B('save', T.save, 'troth-s') : B('custom', T.customise, 'troth-s'))));
    dlg.querySelector(focus).focus();
  };
  const open = cust => {
    if (!d.body) return ready(() => open(cust));
    if (!dlg) {
      back = d.activeElement;
      dlg = E('div', { id: 'troth-banner', class: optIn ? 'troth' : 'troth troth-soft', role: 'dialog', 'aria-modal': 'true', 'aria-labelledby': 'troth-title', 'aria-describedby': 'troth-body', lang: C.lang });
      dlg.addEventListener('click', e => {
        const a = (e.target.closest('[data-a]') || {}).dataset;
        if (!a) return;
        if (a.a == 'custom') render(1, 'input:not([disabled]),button');
        else if (a.a == 'save') choose(picked(dlg), 'banner_custom');
        else choose(() => a.a == 'accept', a.a == 'accept' ? 'banner_accept_all' : 'banner_reject_all');
      });
      d.addEventListener('keydown', key, true);
      d.body.append(dlg);
    }
    render(cust, 'button');
  };
  const close = () => {
    if (!dlg) return;
    dlg.remove();
    dlg = null;
    d.removeEventListener('keydown', key, true);
    if (back && back != d.body && back.isConnected && back.focus) back.focus();
  };
  function key(e) {
    if (e.key == 'Escape') {
      if (view) render(0, '[data-a=custom]');
      else if (!need()) close();
    } else if (e.key == 'Tab') {
      const f = [...dlg.querySelectorAll('a[href],button,input:not([disabled])')], a = d.activeElement;
      const first = f[0], last = f[f.length - 1];
      if (!dlg.contains(a) || a == (e.shiftKey ? first : last)) {
        e.preventDefault();
        (e.shiftKey ? last : first).focus();
      }
    }
  }
  const panel = P => {
    const s = E('p', { class: 'troth-msg', role: 'status', 'aria-live': 'polite' }), b = B('save', T.save);
    b.onclick = () => choose(picked(P), 'preference_centre', s);
    P.classList.add('troth', 'troth-panel');
    P.append(cats('p'), b, s);
  };

  const api = w.troth = {
    consent: ok,
    visitor: () => vid,
    show: () => open(1),
    set: (o, m) => choose(id => (id in o ? o[id] === true || o[id] == 'given' : on(id)), m || 'banner_custom'),
    on: (c, f) => { hooks.push([c, f]); flush(); },
    track,
    lastReceipt: null,
  };
  if (Object.keys(st).length || !optIn) update();
  opt.forEach(c => ok(c.id) === false && purge(c.id));
  addEventListener('pagehide', () => post(1));
  d.addEventListener('visibilitychange', () => d.visibilityState == 'hidden' && post(1));
  d.addEventListener('click', e => {
    if (e.target.closest && e.target.closest('[data-troth="open"]')) { e.preventDefault(); open(1); }
  });
  ready(() => {
    toast = E('div', { id: 'troth-status', class: 'troth', role: 'status', 'aria-live': 'polite' });
    d.body.append(toast);
    run();
    const P = d.getElementById('troth-preferences');
    if (P) panel(P);
    else if (need()) open(0);
  });
})();

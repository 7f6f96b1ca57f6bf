// The admin page: agent accounts (create, disable / enable, delete, reset password, per-agent
// limit) and the team's canned replies, over the admin HTTP API (docs/protocol.md §9, §10.6).
// Only admins see it; the server checks every request anyway.
import { el } from './render.js';

export function mountAdmin({ client, t, onError }) {
  const $ = (id) => document.getElementById(id);
  const ui = {
    form: $('agent-form'), name: $('new-agent-name'), password: $('new-agent-password'),
    limit: $('new-agent-limit'), isAdmin: $('new-agent-admin'), body: $('agents-body'),
    message: $('admin-message'), cannedForm: $('canned-form'), shortcut: $('canned-shortcut'),
    cannedBody: $('canned-body'), cannedList: $('canned-list'),
  };
  const api = client.api;

  function say(text, error = false) {
    ui.message.textContent = text;
    ui.message.classList.toggle('error', error);
  }

  async function run(fn) {
    try {
      await fn();
      return true;
    } catch (err) {
      say(t('admin.error', { message: err.message || err.code }), true);
      onError?.(err.message);
      return false;
    }
  }

  function agentRow(a, defaultLimit) {
    const tr = el('tr');
    tr.dataset.agent = a.name;
    const limit = el('input');
    limit.type = 'number';
    limit.min = '0';
    limit.className = 'limit';
    limit.value = a.max_open ?? '';
    limit.placeholder = t('admin.limit_default', { n: defaultLimit });
    const save = button(t('admin.save_limit'), 'save-limit', () => run(async () => {
      const v = limit.value.trim();
      await api.updateAgent(a.id, { max_open: v === '' ? null : Number(v) });
      await load();
    }));
    const toggle = button(a.disabled ? t('admin.enable') : t('admin.disable'), a.disabled ? 'enable' : 'disable',
      () => run(async () => { await api.updateAgent(a.id, { disabled: !a.disabled }); await load(); }));
    const reset = button(t('admin.reset'), 'reset', () => {
      const pw = window.prompt(t('admin.new_password', { name: a.name }));
      if (pw) run(async () => { await api.resetPassword(a.id, pw); await load(); });
    });
    const del = button(t('admin.delete'), 'delete', () => {
      if (window.confirm(t('admin.confirm_delete', { name: a.name }))) run(async () => { await api.deleteAgent(a.id); await load(); });
    });
    const mine = a.id === client.agent?.id;
    toggle.disabled = mine;
    del.disabled = mine;
    const role = a.is_admin ? t('role.admin') : t('role.agent');
    tr.append(el('td', 'name', `${a.name}（${role}）`), el('td', 'state', a.disabled ? t('admin.disabled') : t('admin.enabled')),
      el('td', 'load', String(a.load ?? 0)), cell(limit, save), cell(toggle, reset, del));
    return tr;
  }

  function button(text, cls, onClick) {
    const b = el('button', `ghost small ${cls}`, text);
    b.type = 'button';
    b.addEventListener('click', onClick);
    return b;
  }

  function cell(...children) {
    const td = el('td');
    td.append(...children);
    return td;
  }

  async function load() {
    await run(async () => {
      const [agents, canned] = await Promise.all([api.adminAgents(), api.canned()]);
      const list = agents.agents || [];
      const dflt = list.find((a) => a.max_open === null)?.limit ?? '';
      ui.body.replaceChildren(...list.map((a) => agentRow(a, dflt)));
      client.desk.canned = canned.canned || [];
      ui.cannedList.replaceChildren(...client.desk.canned.map((c) => {
        const li = el('li', 'canned-row');
        li.dataset.shortcut = c.shortcut;
        li.append(el('b', null, `/${c.shortcut}`), el('span', null, c.body),
          button(t('admin.delete'), 'delete', () => run(async () => { await api.deleteCanned(c.id); await load(); })));
        return li;
      }));
    });
  }

  ui.form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const fields = { name: ui.name.value.trim(), password: ui.password.value, is_admin: ui.isAdmin.checked };
    if (ui.limit.value.trim() !== '') fields.max_open = Number(ui.limit.value);
    const ok = await run(() => api.createAgent(fields));
    if (ok) {
      say(t('admin.created', { name: fields.name }));
      ui.form.reset();
      await load();
    }
  });

  ui.cannedForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    if (await run(() => api.createCanned(ui.shortcut.value.trim(), ui.cannedBody.value))) {
      ui.cannedForm.reset();
      await load();
    }
  });

  return { load };
}

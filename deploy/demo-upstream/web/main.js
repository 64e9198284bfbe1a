// @ts-check
// The SalesFlow demo page: log in, list leads, throw a test error. Every request goes to the origin that
// served the page, so loaded through the gateway it talks to the API through the gateway, and the browser
// SDK's envelopes go to the gateway's Sentry tunnel. Bundled with @sentry/browser by web/page.ts (esbuild);
// plain JavaScript so the node-only tsconfig stays as it is (web/tsconfig.json type-checks it with the DOM).
import * as Sentry from '@sentry/browser'

/** @typedef {{ dsn?: string, tunnel?: string, tracesSampleRate?: number, environment?: string }} PageConfig */
/** @typedef {{ id: number, name: string, email: string | null, status: string, p_score: number, created_at: string }} Lead */

/** @type {PageConfig} */
const config = JSON.parse(document.getElementById('salesflow-config')?.textContent || '{}')

if (config.dsn) {
  Sentry.init({
    dsn: config.dsn,
    // First party: the gateway forwards envelopes for allow-listed DSNs, so ad blockers do not drop them.
    tunnel: config.tunnel || '/monitoring',
    environment: config.environment || 'demo',
    // Transactions with child spans, like the gateway sends (the SDK's default streams spans instead).
    traceLifecycle: 'static',
    integrations: [
      Sentry.browserTracingIntegration(),
      Sentry.replayIntegration({ maskAllText: true, blockAllMedia: true }),
    ],
    tracesSampleRate: config.tracesSampleRate ?? 1,
    // Requests to the page's own origin (the gateway) carry sentry-trace and baggage: one trace end to end.
    tracePropagationTargets: [location.origin],
    replaysSessionSampleRate: 0.1,
    replaysOnErrorSampleRate: 1.0,
  })
}

/** @param {string} id */
const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id))
const status = $('status')
const leadsTable = /** @type {HTMLTableElement} */ ($('leads'))
const listButton = $('list-leads')
/** @type {string | null} */
let token = null

/** @param {string} text @param {boolean} [isError] */
function say(text, isError = false) {
  status.textContent = text
  status.classList.toggle('error', isError)
}

/** @param {Response} res */
async function detailOf(res) {
  try {
    const body = await res.json()
    return typeof body.detail === 'string' ? body.detail : JSON.stringify(body.detail)
  } catch {
    return res.statusText
  }
}

$('login').addEventListener('submit', async (event) => {
  event.preventDefault()
  const form = new FormData(/** @type {HTMLFormElement} */ (event.currentTarget))
  const username = String(form.get('username') ?? '')
  say('Logging in…')
  const res = await fetch('/auth/login', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username, password: String(form.get('password') ?? '') }),
  })
  if (!res.ok) {
    token = null
    listButton.hidden = true
    return say(`Login failed (${res.status}): ${await detailOf(res)}`, true)
  }
  token = (await res.json()).access_token
  $('who').textContent = `Signed in as ${username}`
  listButton.hidden = false
  say('Logged in.')
})

listButton.addEventListener('click', async () => {
  if (!token) return say('Log in first.', true)
  say('Loading leads…')
  const res = await fetch('/api/leads?limit=20', { headers: { authorization: `Bearer ${token}` } })
  if (!res.ok) return say(`Listing leads failed (${res.status}): ${await detailOf(res)}`, true)
  /** @type {{ items: Lead[], total: number }} */
  const page = await res.json()
  const body = /** @type {HTMLTableSectionElement} */ (leadsTable.tBodies[0])
  body.replaceChildren(...page.items.map((lead) => {
    const row = document.createElement('tr')
    const cells = [lead.name, lead.email ?? '—', lead.status, lead.p_score.toFixed(1), lead.created_at.slice(0, 10)]
    cells.forEach((text, i) => {
      const cell = row.insertCell()
      cell.textContent = text
      if (i === 3) cell.className = 'num'
    })
    return row
  }))
  leadsTable.hidden = false
  say(`${page.items.length} of ${page.total} leads.`)
})

$('boom').addEventListener('click', () => {
  say('Threw a test error (see Sentry).', true)
  throw new Error('SalesFlow test error')
})

import t from 'tap'
import { ConfigError, loadConfig } from '../src/config.js'

t.test('defaults match the contract', async (t) => {
  const config = loadConfig({})
  t.match(config, {
    host: '0.0.0.0', port: 5000, python: undefined, poolSize: 4, queueLimit: 1000, queueTimeoutMs: 30000,
    taskTimeoutMs: 30000, maxCallsPerWorker: 10000, maxWorkerRssMb: 512, bodyLimitBytes: 16777216,
    maxFrameBytes: 67108864, queueLimitBytes: 67108864, receiveLimitBytes: 67108864, workerStartTimeoutMs: 60000, taskModules: [], diagTasks: false, adminToken: undefined,
    shutdownGraceMs: 10000, workerStopGraceMs: 2000, logLevel: 'info', workerSchedBatch: false, requestBodyTimeoutMs: 300000,
    // Settings beyond SPEC §5, with README's defaults.
    responseStallTimeoutMs: 300000, keepAliveTimeoutMs: 72000, maxConnections: 10000, maxEventLoopDelayMs: 1000, maxHeapUsedBytes: 0, maxRssBytes: 0,
    offloadMinBytes: 262144
  })
  t.same(config.taskConcurrency, {})
  t.same(config.taskTimeouts, {})
  t.ok(Object.isFrozen(config))
})

t.test('reads every setting', async (t) => {
  const config = loadConfig({
    HOST: '127.0.0.1', PORT: '8080', PYTHON: '/usr/bin/python3', POOL_SIZE: '2', QUEUE_LIMIT: '0', TASK_MODULES: 'a.b, c',
    DIAG_TASKS: '1', ADMIN_TOKEN: 'x7Rq-4mZ'.repeat(4), TASK_CONCURRENCY: 'csv.profile=1, xml.import=9', TASK_TIMEOUTS: 'xml.import=120000,echo=5', LOG_LEVEL: 'WARN',
    WORKER_SCHED_BATCH: 'yes', REQUEST_BODY_TIMEOUT_MS: '0', QUEUE_LIMIT_BYTES: '0', RECEIVE_LIMIT_BYTES: '0', MAX_CONNECTIONS: '0', OFFLOAD_MIN_BYTES: '0'
  })
  t.match(config, { host: '127.0.0.1', port: 8080, python: '/usr/bin/python3', poolSize: 2, queueLimit: 0, queueLimitBytes: 0, receiveLimitBytes: 0, offloadMinBytes: 0, diagTasks: true, logLevel: 'warn', workerSchedBatch: true, requestBodyTimeoutMs: 0, maxConnections: 0 })
  t.equal(loadConfig({ MAX_CONNECTIONS: ' 2 ' }).maxConnections, 2)
  t.equal(loadConfig({}).shedLateCalls, false, 'SHED_LATE_CALLS is off by default')
  t.equal(loadConfig({ SHED_LATE_CALLS: '1' }).shedLateCalls, true)
  t.equal(loadConfig({}).probePort, undefined, 'no PROBE_PORT: probes on PORT alone')
  t.equal(loadConfig({ PROBE_PORT: ' ' }).probePort, undefined)
  t.equal(loadConfig({ PROBE_PORT: '9090' }).probePort, 9090)
  t.equal(loadConfig({ PORT: '0', PROBE_PORT: '0' }).probePort, 0, 'both on ports the system picks')
  t.same(config.taskModules, ['a.b', 'c'])
  t.same(loadConfig({ TASK_MODULES: 'pyfleetish, pyfleet_shop.tasks' }).taskModules, ['pyfleetish', 'pyfleet_shop.tasks'], 'only pyfleet\'s own packages are refused, not names like them')
  t.same(config.taskConcurrency, { 'csv.profile': 1, 'xml.import': 2 }, 'limits are capped at the pool size')
  t.same(config.taskTimeouts, { 'xml.import': 120000, echo: 5 })
  t.equal(config.taskTimeouts.toString, undefined, 'a task named toString finds no setting of Object\'s')
  t.equal(loadConfig({}).taskConcurrency.constructor, undefined)
  t.same(loadConfig({ TASK_CONCURRENCY: 'echo=99999999999999999999' }).taskConcurrency, { echo: 4 }, 'a limit past 2^53 is a limit past the pool size, not an error claiming it is below 1')
  t.match(loadConfig({ TASK_CONCURRENCY: 'echo=1,', TASK_TIMEOUTS: ' ,echo=5, ' }), { taskConcurrency: { echo: 1 }, taskTimeouts: { echo: 5 } }, 'empty entries (a trailing comma) are skipped, as in TASK_MODULES')
  t.equal(config.adminToken, 'x7Rq-4mZ'.repeat(4))
  t.notOk('ADMIN_TOKEN' in config.workerEnv, 'the admin token is not passed on to the workers')
  t.equal(config.workerEnv.LOG_LEVEL, 'WARN', 'the rest of the environment is')
})

t.test('RELOAD_ON_CHANGE: workers write no bytecode cache, which a save within the same second would hide', async (t) => {
  t.equal(loadConfig({ RELOAD_ON_CHANGE: '1' }).workerEnv.PYTHONDONTWRITEBYTECODE, '1')
  t.equal(loadConfig({ RELOAD_ON_CHANGE: '1', PYTHONDONTWRITEBYTECODE: '' }).workerEnv.PYTHONDONTWRITEBYTECODE, '1', 'empty is unset, to Python')
  t.equal(loadConfig({ RELOAD_ON_CHANGE: '1', PYTHONDONTWRITEBYTECODE: 'yes' }).workerEnv.PYTHONDONTWRITEBYTECODE, 'yes', 'a value of the user\'s stays')
  t.notOk('PYTHONDONTWRITEBYTECODE' in loadConfig({}).workerEnv, 'without RELOAD_ON_CHANGE, the environment as it is')
})

t.test('bad values fail with a message that names the setting', async (t) => {
  const cases: Array<[Record<string, string>, RegExp]> = [
    [{ POOL_SIZE: 'four' }, /POOL_SIZE="four" is not an integer: use 1\.\.256/],
    [{ POOL_SIZE: '0' }, /POOL_SIZE=0 is out of range/],
    [{ PORT: '70000' }, /PORT=70000 is out of range/],
    [{ PROBE_PORT: '70000' }, /PROBE_PORT=70000 is out of range/],
    [{ PROBE_PORT: 'probes' }, /PROBE_PORT="probes" is not an integer/],
    [{ PROBE_PORT: '5000' }, /^PROBE_PORT=5000 is PORT too: give the probes a port of their own/],
    [{ QUEUE_TIMEOUT_MS: '1.5' }, /QUEUE_TIMEOUT_MS/],
    [{ DIAG_TASKS: 'maybe' }, /DIAG_TASKS="maybe" is not a boolean: use 1, true or yes; 0, false or no/],
    [{ LOG_LEVEL: 'loud' }, /LOG_LEVEL="loud" is not one of/],
    [{ TASK_MODULES: 'ok, not-a-module' }, /TASK_MODULES: "not-a-module"/],
    // Served without DIAG_TASKS otherwise; and the rest is loaded anyway. A package of one's own named pyfleetish is fine.
    [{ TASK_MODULES: 'mine, pyfleet_tasks.diag' }, /^TASK_MODULES: pyfleet_tasks\.diag is pyfleet's own \(every worker loads the built-in tasks; diag\.work comes with DIAG_TASKS=1\); list your own modules only$/],
    [{ TASK_MODULES: 'pyfleet_tasks' }, /^TASK_MODULES: pyfleet_tasks is pyfleet's own/],
    [{ TASK_MODULES: 'pyfleet.testing' }, /^TASK_MODULES: pyfleet\.testing is pyfleet's own/],
    [{ TASK_MODULES: 'mytasks/greeting.py' }, /^TASK_MODULES: "mytasks\/greeting\.py" is not an importable Python module name \(like mypackage\.tasks\): write mytasks\.greeting, with its directory's parent on PYTHONPATH$/],
    [{ TASK_CONCURRENCY: 'csv.profile' }, /TASK_CONCURRENCY: "csv.profile" should be task=limit/],
    [{ TASK_CONCURRENCY: 'echo=0' }, /TASK_CONCURRENCY: "echo=0" should be task=limit with limit at least 1/],
    [{ TASK_CONCURRENCY: 'echo=1,,csv.profile' }, /^TASK_CONCURRENCY: "csv\.profile" should be task=limit/],
    [{ TASK_TIMEOUTS: 'echo' }, /TASK_TIMEOUTS: "echo" should be task=ms with ms from 1 to 2147483647, as in xml.import=120000,echo=1000/],
    [{ TASK_TIMEOUTS: 'echo=0' }, /TASK_TIMEOUTS: "echo=0"/],
    [{ TASK_TIMEOUTS: 'echo=2147483648' }, /TASK_TIMEOUTS: "echo=2147483648"/],
    [{ TASK_TIMEOUTS: 'no such=5' }, /TASK_TIMEOUTS: "no such=5"/],
    [{ TASK_TIMEOUTS: 'echo=1000, csv.profile=9,echo=5' }, /^TASK_TIMEOUTS names echo twice; keep one of its values$/],
    [{ TASK_CONCURRENCY: 'csv.profile=1,csv.profile=7' }, /^TASK_CONCURRENCY names csv\.profile twice; keep one of its values$/],
    [{ ADMIN_TOKEN: 'short' }, /ADMIN_TOKEN is too short/],
    [{ ADMIN_TOKEN: 'k3J-9qZ_w2Lp7Xv' }, /ADMIN_TOKEN is too short to be a secret: use at least 16 characters/], // 15
    [{ ADMIN_TOKEN: 'a'.repeat(32) }, /ADMIN_TOKEN has only 1 different character: .*guessable/],
    [{ ADMIN_TOKEN: 'secret-'.repeat(5) }, /ADMIN_TOKEN has only 6 different characters/],
    [{ ADMIN_TOKEN: 'abc def ghi jkl mno' }, /ADMIN_TOKEN may hold only visible ASCII/],
    [{ ADMIN_TOKEN: ' '.repeat(16) }, /ADMIN_TOKEN may hold only visible ASCII/],
    [{ ADMIN_TOKEN: 'pässwörd-0123456789' }, /ADMIN_TOKEN may hold only visible ASCII/],
    [{ ADMIN_TOKEN: 'x7Rq-4mZ'.repeat(4) + '\n' }, /ADMIN_TOKEN may hold only visible ASCII.*\(this one ends in a line break: a secret made from a file/],
    [{ ADMIN_TOKEN: 'change-me-to-32-random-chars' }, /^ADMIN_TOKEN is an example's placeholder \("change-me\.\.\."\), which anyone can read/],
    [{ ADMIN_TOKEN: 'CHANGEME-0123456789abcdef' }, /ADMIN_TOKEN is an example's placeholder/],
    [{ MAX_EVENT_LOOP_DELAY_MS: '99999999999' }, /MAX_EVENT_LOOP_DELAY_MS=99999999999 is out of range/],
    // Past 2^53 a number is no longer exact: a range with a top, and a message that says it.
    [{ MAX_CALLS_PER_WORKER: '99999999999999999999' }, /^MAX_CALLS_PER_WORKER=99999999999999999999 is out of range: use 0\.\.1000000000$/],
    [{ MAX_WORKER_RSS_MB: '9007199254740993' }, /^MAX_WORKER_RSS_MB=9007199254740993 is out of range: use 0\.\.1048576$/],
    [{ QUEUE_LIMIT_BYTES: '-1' }, /^QUEUE_LIMIT_BYTES=-1 is out of range: use 0\.\.1125899906842624$/],
    [{ RECEIVE_LIMIT_BYTES: '1e3' }, /^RECEIVE_LIMIT_BYTES=/],
    [{ SHUTDOWN_GRACE_MS: '2147483647' }, /SHUTDOWN_GRACE_MS \+ 2 × WORKER_STOP_GRACE_MS \(2147483647 \+ 2 × 2000\) must stay under/],
    [{ WORKER_STOP_GRACE_MS: '1500000000' }, /lower one of them/],
    [{ REQUEST_BODY_TIMEOUT_MS: '-1' }, /REQUEST_BODY_TIMEOUT_MS=-1 is out of range/],
    [{ KEEP_ALIVE_TIMEOUT_MS: '0' }, /KEEP_ALIVE_TIMEOUT_MS=0 is out of range/],
    [{ KEEP_ALIVE_TIMEOUT_MS: '2147483647' }, /KEEP_ALIVE_TIMEOUT_MS=2147483647 is out of range/],
    [{ MAX_CONNECTIONS: '-1' }, /^MAX_CONNECTIONS=-1 is out of range: use 0\.\.1048576$/],
    [{ MAX_CONNECTIONS: '2000000' }, /^MAX_CONNECTIONS=2000000 is out of range: use 0\.\.1048576$/],
    [{ MAX_CONNECTIONS: '10k' }, /^MAX_CONNECTIONS="10k" is not an integer: use 0\.\.1048576$/],
    [{ OFFLOAD_MIN_BYTES: '64KiB' }, /^OFFLOAD_MIN_BYTES="64KiB" is not an integer: use 0\.\.4294967296$/],
    [{ OFFLOAD_MIN_BYTES: '-1' }, /^OFFLOAD_MIN_BYTES=-1 is out of range/],
    [{ BODY_LIMIT_BYTES: '2000', MAX_FRAME_BYTES: '1500' }, /MAX_FRAME_BYTES=1500 must be larger than BODY_LIMIT_BYTES=2000/],
    // Equal is too small as well: a frame holds the body and the call's envelope around it.
    [{ BODY_LIMIT_BYTES: '2000', MAX_FRAME_BYTES: '2000' }, /MAX_FRAME_BYTES=2000 must be larger than BODY_LIMIT_BYTES=2000/]
  ]
  for (const [env, message] of cases) {
    t.throws(() => loadConfig(env), ConfigError, JSON.stringify(env))
    t.throws(() => loadConfig(env), message)
  }
})

t.test('the bounds themselves are accepted: a 16-character ADMIN_TOKEN, a MAX_FRAME_BYTES one byte over BODY_LIMIT_BYTES', async (t) => {
  t.equal(loadConfig({ ADMIN_TOKEN: 'k3J-9qZ_w2Lp7Xv4' }).adminToken, 'k3J-9qZ_w2Lp7Xv4')
  t.equal(loadConfig({ BODY_LIMIT_BYTES: '2000', MAX_FRAME_BYTES: '2001' }).maxFrameBytes, 2001)
})

t.test('HOST must be an address or a host name: a mistyped address fails here, not after the workers started', async (t) => {
  for (const host of ['0.0.0.0', '::', '127.0.0.1', '::1', 'fe80::1%eth0', 'localhost', 'LocalHost', 'api.internal.example', 'pyfleet-0.pyfleet', 'host.', 'proj_web_1']) {
    t.equal(loadConfig({ HOST: host }).host, host, host)
  }
  for (const host of ['999.1.1.1', '10.0.0', 'a b', '-lead.example', 'http://localhost', 'x'.repeat(64), '[::1]']) {
    const error = (() => { try { loadConfig({ HOST: host }) } catch (e) { return e as Error } })()
    t.ok(error instanceof ConfigError, host)
    t.ok(error?.message.startsWith(`HOST=${JSON.stringify(host)} is neither an IP address nor a host name: use 0.0.0.0`), String(error?.message))
  }
  t.throws(() => loadConfig({ HOST: '[::1]' }), { message: /; write an IPv6 address without brackets \(::1\)$/ })
  t.throws(() => loadConfig({ HOST: '0.0.0.0:5000' }), { message: /; the port goes in PORT$/ })
})

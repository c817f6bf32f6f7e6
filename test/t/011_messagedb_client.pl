# A real Message DB client library against the Message DB compatible API:
# @doughtnerd/message-store-connector (npm, "NodeJS client library for
# Eventide Project's Message DB", over node-postgres) runs the same session
# -- writes with and without expected versions, version conflicts, a
# duplicate id, batches (one transaction each), stream reads at positions
# and batch sizes, stream versions, last messages, category reads with
# positions, correlation and consumer groups, the library's errors, and
# project() -- through its own API, as the message_store role, against the
# real Message DB (installed from the npm package @eventide/message-db with
# its own install script, into database "mdb") and against ours
# (CREATE EXTENSION event_store_messagedb into database "ours").  Every step
# must print the same normalized JSON line for both (message times aside;
# ids are fixed, so they are compared); the key steps are also checked
# against concrete values, and the client's messages are read back from
# SQL as event_store events.  Errors carry the fields node-postgres exposes
# (constraint, table, schema, column), compared too.  Messages whose data
# and metadata are not JSON objects -- undefined and null data (SQL NULL,
# as equinox-js and the Practical Microservices client send it), JSON null,
# arrays, strings, numbers, booleans -- are written and read back through
# the library and byte for byte (data::text) over its connection (issue 31).
#
# Needs node, npm and the npm registry; skipped (with the reason) without
# them.
use strict;
use warnings;
use File::Temp qw(tempdir);
use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MessageDBTest qw(npm_env npm_error fetch_message_db start_both);

my $client_pkg = '@doughtnerd/message-store-connector@1.10.1';

for my $tool ('node', 'npm')
{
	my $path = `command -v $tool 2>/dev/null`;
	chomp $path;
	plan skip_all => "$tool is not installed" unless $path;
}

my $pkgdir = tempdir(CLEANUP => 1);
my $npm_env = npm_env($pkgdir);

# The real Message DB (database scripts only).
my ($mdb_install, $why_not) = fetch_message_db($pkgdir);
plan skip_all => $why_not unless $mdb_install;

# The client library, with its dependencies (pg, uuid, promise-poller).
my $clientdir = "$pkgdir/client";
mkdir $clientdir or die "cannot create $clientdir: $!";
# A package.json of its own, so npm installs here (not into a package found
# further up).
open(my $pj, '>', "$clientdir/package.json") or die "cannot write $clientdir/package.json: $!";
print $pj qq({"name": "messagedb-client-session", "version": "1.0.0", "private": true}\n);
close $pj;
my $install = `cd '$clientdir' && $npm_env npm install --no-audit --no-fund --no-package-lock '$client_pkg' 2>&1`;
plan skip_all => "could not install $client_pkg from the npm registry: " . npm_error($install)
  unless $? == 0
  && -f "$clientdir/node_modules/\@doughtnerd/message-store-connector/dist/index.js"
  && -f "$clientdir/node_modules/pg/package.json";

# The session, run once per database.  One JSON line per step:
# {"step": name, "result": ...} or {"step": name, "error": message, "code": SQLSTATE}.
my $script = "$clientdir/session.js";
open(my $fh, '>', $script) or die "cannot write $script: $!";
print $fh <<'JS';
'use strict';
// Connection from PGHOST, PGPORT, PGUSER, PGDATABASE.
const { Client } = require('pg');
const { MessageStore, EventideClient, PostgresClient } =
  require('@doughtnerd/message-store-connector');

const uuid = (n) => '00000000-0000-4000-8000-' + String(n).padStart(12, '0');
const started = Date.now();
const times = [];

// A message without its time (kept aside, checked at the end).
function norm(m) {
  const out = {};
  for (const k of Object.keys(m)) {
    if (k === 'time') times.push(m.time);
    else out[k] = m[k];
  }
  return out;
}
const normAll = (rows) => rows.map(norm);

async function main() {
  const pg = new Client();
  await pg.connect();
  const store = new MessageStore(new EventideClient(new PostgresClient(pg)));

  async function step(name, fn) {
    let line;
    try {
      line = { step: name, result: await fn() };
    } catch (e) {
      line = { step: name, error: e.message, code: e.code === undefined ? null : e.code };
      // the fields a client branches on (err.constraint: a duplicate id)
      for (const f of ['constraint', 'table', 'schema', 'column']) {
        if (e[f] !== undefined) line[f] = e[f];
      }
    }
    process.stdout.write(JSON.stringify(line) + '\n');
  }
  const write = (stream, n, type, data, metadata, expected) =>
    store.writeMessage(stream, { id: uuid(n), type, data, metadata }, expected);
  const batch = (stream, list, expected) =>
    store.writeBatch(stream,
      list.map(([n, type, data, metadata]) => ({ id: uuid(n), type, data, metadata })),
      expected);

  // Writes, one stream at a time.
  await step('write account-1 no expected version', () =>
    write('account-1', 1, 'Opened',
      { owner: 'Ann', limits: { daily: 500 }, tags: ['a', 'b'], vip: true, note: null,
        text: 'quote " backslash \\ unicode \u00e4\u20ac' },
      { traceId: 't-1', userId: 'u-1' }));
  await step('write account-1 expected 0', () =>
    write('account-1', 2, 'Deposited', { amount: 100 },
      { correlationStreamName: 'payment-1', causationMessagePosition: '0' }, 0));
  await step('write account-1 expected 1', () =>
    write('account-1', 3, 'Withdrawn', { amount: 30.5 }, undefined, 1));
  await step('write account-1 expected 5 (ahead)', () =>
    write('account-1', 4, 'Deposited', { amount: 1 }, {}, 5));
  await step('write account-1 expected 1 (stale)', () =>
    write('account-1', 5, 'Deposited', { amount: 1 }, {}, 1));
  await step('write account-1 expected -1 (exists)', () =>
    write('account-1', 6, 'Deposited', { amount: 1 }, {}, -1));
  await step('write account-2 expected -1 (new)', () =>
    write('account-2', 7, 'Opened', { owner: 'Bob' }, { correlationStreamName: 'payment-2' }, -1));
  await step('write account-3 expected 0 (no stream)', () =>
    write('account-3', 8, 'Opened', { owner: 'Cy' }, {}, 0));
  await step('write account-2 duplicate id', () =>
    write('account-2', 1, 'Deposited', { amount: 5 }, {}));
  await step('write account-2 after the failures', () =>
    write('account-2', 9, 'Deposited', { amount: 40 }, null));
  await step('write payment-1 (other category)', () =>
    write('payment-1', 10, 'Paid', { amount: 100 }, { correlationStreamName: 'account-1' }));

  // Batches (the library writes them in one transaction, expected version + i).
  await step('writeBatch account-3 expected -1', () =>
    batch('account-3', [[11, 'Opened', { owner: 'Cy' }, {}],
      [12, 'Deposited', { amount: 10 }, { correlationStreamName: 'payment-3' }],
      [13, 'Deposited', { amount: 20 }, {}]], -1));
  await step('writeBatch account-3 expected 2', () =>
    batch('account-3', [[14, 'Withdrawn', { amount: 5 }, {}],
      [15, 'Deposited', { amount: 1 }, {}]], 2));
  await step('writeBatch account-3 expected 1 (stale)', () =>
    batch('account-3', [[16, 'Deposited', { amount: 1 }, {}],
      [17, 'Deposited', { amount: 1 }, {}]], 1));
  await step('writeBatch account-4+cash no expected version', () =>
    batch('account-4+cash', [[18, 'Opened', { owner: 'Di' }, {}],
      [19, 'Deposited', { amount: 7 }, { correlationStreamName: 'payment-4' }]]));
  await step('writeBatch account-5 duplicate id (rolled back)', () =>
    batch('account-5', [[20, 'Opened', { owner: 'Ed' }, {}],
      [2, 'Deposited', { amount: 1 }, {}]]));
  for (let i = 6; i <= 11; i++) {
    await step(`write account-${i}`, () =>
      write(`account-${i}`, 100 + i, 'Opened', { owner: `o${i}` },
        i % 2 ? { correlationStreamName: `payment-${i}` } : {}));
  }

  // Data and metadata that are not objects.  node-postgres sends undefined
  // and null as SQL NULL, a number or boolean as its text, and a string as
  // it is (so JSON text: JSON.stringify); a JS array it would send as a
  // PostgreSQL array literal, which is not JSON (an error on both).
  await step('write cart-1 data undefined (SQL NULL)', () =>
    write('cart-1', 200, 'TestEvent', undefined, undefined));
  await step('write cart-1 data null (SQL NULL)', () =>
    write('cart-1', 201, 'TestEvent', null, { correlationStreamName: 'payment-7' }, 0));
  await step('write cart-1 data JSON null', () =>
    write('cart-1', 202, 'TestEvent', 'null', JSON.stringify([1, 'two'])));
  await step('write cart-1 data array, metadata JSON null', () =>
    write('cart-1', 203, 'TestEvent', JSON.stringify([1, 'two', { three: 3 }, null]), 'null', 2));
  await step('write cart-1 data string', () =>
    write('cart-1', 204, 'TestEvent', JSON.stringify('x " \u00e4'), JSON.stringify('m')));
  await step('write cart-1 data number', () => write('cart-1', 205, 'TestEvent', 12.5, {}));
  await step('write cart-2 data boolean', () => write('cart-2', 206, 'TestEvent', true, null, -1));
  await step('write cart-2 data JS array (not JSON to node-postgres)', () =>
    write('cart-2', 207, 'TestEvent', [1, 2], {}));
  await step('write cart-2 duplicate id, data null', () => write('cart-2', 201, 'TestEvent', null));
  await step('write cart-2 id undefined', () =>
    store.writeMessage('cart-2', { id: undefined, type: 'TestEvent', data: null }));
  await step('write cart-2 type undefined', () =>
    store.writeMessage('cart-2', { id: uuid(208), type: undefined, data: 1 }));
  await step('write stream name null', () =>
    store.writeMessage(null, { id: uuid(209), type: 'TestEvent', data: {} }));
  await step('getStreamMessages cart-1', () => store.getStreamMessages('cart-1').then(normAll));
  await step('getLastStreamMessage cart-1', () => store.getLastStreamMessage('cart-1').then(normAll));
  await step('getCategoryMessages cart', () => store.getCategoryMessages('cart').then(normAll));
  await step('getCategoryMessages cart correlation payment', () =>
    store.getCategoryMessages('cart', { correlation: 'payment' }).then(normAll));
  // byte for byte, SQL NULL apart from JSON null (the library parses both to null)
  await step('cart-1 data::text and metadata::text', () =>
    pg.query(`SELECT position::int, data::text AS data, metadata::text AS metadata,
                     data IS NULL AS "dataIsNull", metadata IS NULL AS "metadataIsNull"
                FROM get_stream_messages('cart-1')`).then((r) => r.rows));
  await step('cart last message data::text', () =>
    pg.query(`SELECT data::text AS data, metadata::text AS metadata
                FROM get_last_stream_message('cart-2')`).then((r) => r.rows));

  // Stream reads.
  const stream = (name, opts) => store.getStreamMessages(name, opts).then(normAll);
  await step('getStreamMessages account-1', () => stream('account-1'));
  await step('getStreamMessages account-1 from 1', () => stream('account-1', { startingPosition: 1 }));
  await step('getStreamMessages account-1 from 0 batch 2', () =>
    stream('account-1', { startingPosition: 0, batchSize: 2 }));
  await step('getStreamMessages account-1 from 2 batch 1', () =>
    stream('account-1', { startingPosition: 2, batchSize: 1 }));
  await step('getStreamMessages account-1 from 3', () => stream('account-1', { startingPosition: 3 }));
  await step('getStreamMessages account-1 batch -1', () => stream('account-1', { batchSize: -1 }));
  await step('getStreamMessages account-3', () => stream('account-3'));
  await step('getStreamMessages account-4+cash', () => stream('account-4+cash'));
  await step('getStreamMessages account-404', () => stream('account-404'));
  await step('getStreamMessages account-5 (rolled back)', () => stream('account-5'));
  await step('getStreamMessages account (a category)', () => stream('account'));
  await step('getStreamMessages with a condition (not activated)', () =>
    stream('account-1', { condition: 'position > 0' }));

  for (const s of ['account-1', 'account-2', 'account-3', 'account-4+cash', 'account-5', 'account-404']) {
    await step(`getStreamVersion ${s}`, () => store.getStreamVersion(s));
    await step(`getLastStreamMessage ${s}`, () => store.getLastStreamMessage(s).then(normAll));
  }

  // Category reads.
  const cat = (name, opts) => store.getCategoryMessages(name, opts).then(normAll);
  await step('getCategoryMessages account', () => cat('account'));
  await step('getCategoryMessages account from 5 batch 4', () =>
    cat('account', { startingPosition: 5, batchSize: 4 }));
  await step('getCategoryMessages account batch -1', () => cat('account', { batchSize: -1 }));
  await step('getCategoryMessages payment', () => cat('payment'));
  await step('getCategoryMessages none', () => cat('none'));
  await step('getCategoryMessages account correlation payment', () =>
    cat('account', { correlation: 'payment' }));
  await step('getCategoryMessages account correlation payment from 10 batch 2', () =>
    cat('account', { correlation: 'payment', startingPosition: 10, batchSize: 2 }));
  for (const size of [1, 2, 3]) {
    for (let member = 0; member < size; member++) {
      await step(`getCategoryMessages account consumer group ${member}/${size}`, () =>
        cat('account', { consumerGroupMember: member, consumerGroupSize: size }));
    }
  }
  await step('getCategoryMessages account consumer group 1/2 correlation payment batch 2', () =>
    cat('account', { consumerGroupMember: 1, consumerGroupSize: 2, correlation: 'payment', batchSize: 2 }));
  await step('getCategoryMessages account-1 (a stream)', () => cat('account-1'));
  await step('getCategoryMessages account correlation payment-1 (a stream)', () =>
    cat('account', { correlation: 'payment-1' }));
  await step('getCategoryMessages account consumer group 2/2', () =>
    cat('account', { consumerGroupMember: 2, consumerGroupSize: 2 }));
  await step('getCategoryMessages account consumer group member without size', () =>
    cat('account', { consumerGroupMember: 0 }));

  // project(): the stream version, then the stream in batches.
  const balance = {
    projectionName: 'balance',
    entity: () => ({ balance: 0, opened: false, seen: [] }),
    handlers: {
      Opened: (e, m) => ({ ...e, opened: true, owner: m.data.owner, seen: [...e.seen, m.position] }),
      Deposited: (e, m) => ({ ...e, balance: e.balance + m.data.amount, seen: [...e.seen, m.position] }),
      Withdrawn: (e, m) => ({ ...e, balance: e.balance - m.data.amount, seen: [...e.seen, m.position] }),
    },
  };
  await step('project account-1', () => store.project('account-1', balance));
  await step('project account-3 batch 2', () => store.project('account-3', balance, { batchSize: 2 }));
  await step('project account-3 from 3 batch 1', () =>
    store.project('account-3', balance, { startingPosition: 3, batchSize: 1 }));
  await step('project account-404', () => store.project('account-404', balance));

  // Message times: Dates, in UTC (node runs with TZ=UTC and the column is a
  // timestamp without time zone), so within this run give or take minutes.
  const ended = Date.now();
  await step('message times', () => ({
    seen: times.length > 0,
    allDates: times.every((t) => t instanceof Date && !isNaN(t.getTime())),
    allUtcDuringRun: times.every((t) => t.getTime() >= started - 600000 && t.getTime() <= ended + 600000),
  }));

  await pg.end();
}

main().catch((e) => { console.error(e); process.exit(1); });
JS
close $fh;

# The real Message DB in "mdb", ours in "ours" (the role is reused).
my $node = start_both('messagedb_client', $mdb_install);

# Run the session in one database; return the steps in order and by name.
sub session
{
	my ($db) = @_;
	local $ENV{PGHOST} = $node->host;
	local $ENV{PGPORT} = $node->port;
	local $ENV{PGUSER} = 'message_store';
	local $ENV{PGDATABASE} = $db;
	local $ENV{TZ} = 'UTC';
	local $ENV{NODE_PATH} = "$clientdir/node_modules";
	my ($stdout, $stderr);
	my $ok = IPC::Run::run([ 'node', $script ], '<', \undef, '>', \$stdout, '2>', \$stderr);
	ok($ok, "the client session ran against $db") or diag($stderr);
	my (@names, %lines);
	for my $line (split /\n/, $stdout)
	{
		my $step = decode_json($line)->{step};
		push @names, $step;
		$lines{$step} = $line;
	}
	return (\@names, \%lines);
}

my ($mdb_names, $mdb) = session('mdb');
my ($our_names, $ours) = session('ours');
cmp_ok(scalar @$mdb_names, '>', 60, 'the session has its steps (' . scalar(@$mdb_names) . ')');
is(join("\n", @$our_names), join("\n", @$mdb_names), 'same steps against both');

# Step by step: the same answer from ours as from Message DB.
for my $step (@$mdb_names)
{
	is($ours->{$step}, $mdb->{$step}, "same answer: $step");
	note("$step: $mdb->{$step}") if $ENV{MESSAGEDB_DIFF_VERBOSE};
}

# Concrete values, against ours (so both being wrong alike still fails).
sub result { my $l = $ours->{ $_[0] }; return defined $l ? decode_json($l) : {}; }
sub positions { return join(',', map { $_->{position} } @{ result($_[0])->{result} || [] }); }
sub globals { return join(',', map { $_->{globalPosition} } @{ result($_[0])->{result} || [] }); }

is_deeply(
	[ map { result($_)->{result} } 'write account-1 no expected version',
		'write account-1 expected 0', 'write account-1 expected 1' ],
	[ map { { streamPosition => "$_" } } 0 .. 2 ],
	'writes return the positions 0, 1, 2 (as strings: write_message is a bigint)');
is(result('write account-1 expected 5 (ahead)')->{error},
	'Wrong expected version: 5 (Stream: account-1, Stream Version: 2)',
	'a write ahead of the stream: the Wrong expected version error');
is(result('write account-1 expected 1 (stale)')->{code}, 'P0001', 'a stale expected version: SQLSTATE P0001');
like(result('write account-1 expected -1 (exists)')->{error}, qr/^Wrong expected version: -1 /,
	'expected version -1 on an existing stream: conflict');
is(result('write account-3 expected 0 (no stream)')->{error},
	'Wrong expected version: 0 (Stream: account-3, Stream Version: -1)',
	'expected version 0 with no stream: conflict, stream version -1');
is_deeply(result('write account-2 expected -1 (new)')->{result}, { streamPosition => '0' },
	'expected version -1 starts a stream');
is(result('write account-2 duplicate id')->{code}, '23505', 'a duplicate id: 23505');
is_deeply([ map { result('write account-2 duplicate id')->{$_} } 'constraint', 'table', 'schema' ],
	[ 'messages_id', 'messages', 'message_store' ],
	'a duplicate id: err.constraint messages_id, err.table messages, err.schema message_store');
is_deeply([ map { result('write cart-2 id undefined')->{$_} } 'code', 'column', 'table', 'schema' ],
	[ '23502', 'id', 'messages', 'message_store' ],
	'a NULL id: 23502 with err.column id, err.table messages, err.schema message_store');
is_deeply([ map { result('write cart-2 type undefined')->{$_} } 'code', 'column' ], [ '23502', 'type' ],
	'a NULL type: 23502 with err.column type');
is_deeply([ map { result('write stream name null')->{$_} } 'code', 'column' ], [ '23502', 'stream_name' ],
	'a NULL stream name: 23502 with err.column stream_name');

# Data of any JSON type, written through the library and read back.
is_deeply(
	[ map { result($_)->{result} } 'write cart-1 data undefined (SQL NULL)', 'write cart-1 data null (SQL NULL)',
		'write cart-1 data JSON null', 'write cart-1 data array, metadata JSON null',
		'write cart-1 data string', 'write cart-1 data number', 'write cart-2 data boolean' ],
	[ map { { streamPosition => "$_" } } 0 .. 5, 0 ],
	'writes of data that is not an object succeed, at positions 0..5 (cart-1) and 0 (cart-2)');
is_deeply(result('cart-1 data::text and metadata::text')->{result},
	[
		{ position => 0, data => undef, metadata => undef, dataIsNull => JSON::PP::true, metadataIsNull => JSON::PP::true },
		{ position => 1, data => undef, metadata => '{"correlationStreamName": "payment-7"}',
		  dataIsNull => JSON::PP::true, metadataIsNull => JSON::PP::false },
		{ position => 2, data => 'null', metadata => '[1, "two"]', dataIsNull => JSON::PP::false, metadataIsNull => JSON::PP::false },
		{ position => 3, data => '[1, "two", {"three": 3}, null]', metadata => 'null',
		  dataIsNull => JSON::PP::false, metadataIsNull => JSON::PP::false },
		{ position => 4, data => "\"x \\\" \x{e4}\"", metadata => '"m"', dataIsNull => JSON::PP::false, metadataIsNull => JSON::PP::false },
		{ position => 5, data => '12.5', metadata => '{}', dataIsNull => JSON::PP::false, metadataIsNull => JSON::PP::false },
	],
	'cart-1 read back byte for byte: SQL NULL, JSON null, array, string, number');
is_deeply([ map { $_->{data} } @{ result('getStreamMessages cart-1')->{result} || [] } ],
	[ undef, undef, undef, [ 1, 'two', { three => 3 }, undef ], "x \" \x{e4}", 12.5 ],
	'cart-1 through the library: the values parsed');
is(result('write cart-2 data JS array (not JSON to node-postgres)')->{code}, '22P02',
	'a JS array is sent as a PostgreSQL array literal: not JSON, refused by both');
is_deeply(result('writeBatch account-3 expected -1')->{result},
	[ map { { streamPosition => "$_" } } 0 .. 2 ], 'writeBatch on a new stream: 0, 1, 2');
is_deeply(result('writeBatch account-3 expected 2')->{result},
	[ map { { streamPosition => "$_" } } 3, 4 ], 'writeBatch at the expected version: 3, 4');
like(result('writeBatch account-3 expected 1 (stale)')->{error}, qr/^Wrong expected version: 1 /,
	'writeBatch at a stale version: conflict');
is_deeply(result('getStreamVersion account-3')->{result}, { streamVersion => 4 },
	'the failed batch wrote nothing (account-3 at 4)');
is_deeply(result('getStreamVersion account-5')->{result}, { streamVersion => undef },
	'the batch with a duplicate id was rolled back (no account-5)');
is_deeply(result('getStreamVersion account-1')->{result}, { streamVersion => 2 }, 'stream version of account-1');
is_deeply(result('getStreamVersion account-404')->{result}, { streamVersion => undef },
	'stream version of a missing stream: null');

is(positions('getStreamMessages account-1'), '0,1,2', 'account-1 read back: positions 0, 1, 2');
is(positions('getStreamMessages account-1 from 1'), '1,2', 'from position 1');
is(positions('getStreamMessages account-1 from 0 batch 2'), '0,1', 'batch size 2');
is(positions('getStreamMessages account-1 from 2 batch 1'), '2', 'from 2, batch size 1');
is(positions('getStreamMessages account-1 from 3'), '', 'past the end: nothing');
is(positions('getStreamMessages account-3'), '0,1,2,3,4', 'account-3: the two batches');
my $first = result('getStreamMessages account-1')->{result}[0];
is_deeply(
	$first,
	{
		id => '00000000-0000-4000-8000-000000000001',
		streamName => 'account-1',
		type => 'Opened',
		position => 0,
		globalPosition => 1,
		data => {
			owner => 'Ann', limits => { daily => 500 }, tags => [ 'a', 'b' ],
			vip => JSON::PP::true, note => undef,
			text => "quote \" backslash \\ unicode \x{e4}\x{20ac}"
		},
		metadata => { traceId => 't-1', userId => 'u-1' }
	},
	'the first message round-trips: id, names, positions, data and metadata as objects');
is(result('getStreamMessages account-1')->{result}[2]{metadata}, undef, 'undefined metadata reads back as null');
is(result('getLastStreamMessage account-1')->{result}[0]{id}, '00000000-0000-4000-8000-000000000003',
	'the last message of account-1');
is_deeply(result('getLastStreamMessage account-404')->{result}, [], 'no last message of a missing stream');
like(result('getStreamMessages account (a category)')->{error}, qr/^Must be a stream name: account/,
	'a category is not a stream');
like(result('getCategoryMessages account-1 (a stream)')->{error}, qr/^Must be a category: account-1/,
	'a stream is not a category');

# The category: every account message, in global order (the failed writes
# left holes where Message DB's do).
my @all = @{ result('getCategoryMessages account')->{result} || [] };
is(scalar @all, 3 + 2 + 5 + 2 + 6, 'the category holds the 18 account messages');
my @gp = map { $_->{globalPosition} } @all;
is_deeply(\@gp, [ sort { $a <=> $b } @gp ], 'in global order');
is(globals('getCategoryMessages account from 5 batch 4'),
	join(',', (grep { $_ >= 5 } @gp)[ 0 .. 3 ]), 'from global position 5, batch size 4');
is(join(',', map { $_->{id} } @{ result('getCategoryMessages account correlation payment')->{result} || [] }),
	join(',', map { $_->{id} } grep { ($_->{metadata}{correlationStreamName} // '') =~ /^payment-/ } @all),
	'correlation payment: the messages correlated to payment streams');
for my $size (1 .. 3)
{
	my @members = map { [ map { $_->{globalPosition} } @{ result("getCategoryMessages account consumer group $_/$size")->{result} || [] } ] } 0 .. $size - 1;
	is(join(',', sort { $a <=> $b } map { @$_ } @members), join(',', @gp),
		"consumer group of $size: the members split the category");
	my %member_of;
	for my $m (0 .. $size - 1)
	{
		$member_of{$_->{streamName}}{$m} = 1
		  for @{ result("getCategoryMessages account consumer group $m/$size")->{result} || [] };
	}
	is(scalar(grep { keys %$_ != 1 } values %member_of), 0,
		"consumer group of $size: every stream in one member");
}
is(result('getCategoryMessages account consumer group 2/2')->{code}, 'P0001', 'member 2 of 2: an error');

is_deeply(result('project account-1')->{result},
	{ balance => 69.5, opened => JSON::PP::true, seen => [ 0, 1, 2 ], owner => 'Ann' },
	'project account-1: 100 - 30.5');
is_deeply(result('project account-3 batch 2')->{result},
	{ balance => 26, opened => JSON::PP::true, seen => [ 0 .. 4 ], owner => 'Cy' },
	'project account-3 in batches of 2');
is_deeply(result('project account-3 from 3 batch 1')->{result},
	{ balance => -4, opened => JSON::PP::false, seen => [ 3, 4 ] },
	'project account-3 from position 3');
is_deeply(result('project account-404')->{result},
	{ balance => 0, opened => JSON::PP::false, seen => [] },
	'project a missing stream: the initial entity');
is_deeply(result('message times')->{result},
	{ seen => JSON::PP::true, allDates => JSON::PP::true, allUtcDuringRun => JSON::PP::true },
	'message times are Dates, in UTC');

# What the client wrote through our API is an ordinary event_store stream.
is($node->safe_psql('ours',
		"SELECT string_agg(stream_version || ':' || event_type || ':' || event_id, ' ' ORDER BY stream_version)
		   FROM event_store.read_stream('account-1')"),
	'1:Opened:00000000-0000-4000-8000-000000000001 2:Deposited:00000000-0000-4000-8000-000000000002 '
	  . '3:Withdrawn:00000000-0000-4000-8000-000000000003',
	'account-1 in event_store.read_stream: versions 1..3 (position + 1), types, ids');
is($node->safe_psql('ours',
		"SELECT string_agg(stream_version || ':' || event_type, ' ' ORDER BY stream_version)
		   FROM event_store.read_stream('account-3')"),
	'1:Opened 2:Deposited 3:Deposited 4:Withdrawn 5:Deposited',
	'account-3 (two batches) in event_store.read_stream');
is($node->safe_psql('ours',
		q{SELECT jsonb_typeof(data) || ' ' || jsonb_typeof(metadata) || ' '
		         || (data = '{"amount": 100}' AND metadata = '{"correlationStreamName": "payment-1", "causationMessagePosition": "0"}')
		    FROM event_store.read_stream('account-1') WHERE stream_version = 2}),
	'object object true',
	'data and metadata stored as JSON objects');
is($node->safe_psql('ours',
		"SELECT count(*) FROM message_store.messages m
		   JOIN event_store.events e ON e.event_id = m.id
		  WHERE m.position = e.stream_version - 1 AND m.global_position = e.global_position"),
	$node->safe_psql('mdb', 'SELECT count(*) FROM message_store.messages'),
	'as many events as Message DB has messages, positions translated');
is($node->safe_psql('ours', "SELECT count(*) FROM event_store.streams WHERE stream_id = 'account-5'"),
	'0', 'the rolled-back batch left no event_store stream');
is($node->safe_psql('ours',
		"SELECT string_agg(stream_version || ':' || coalesce(jsonb_typeof(data), 'NULL'), ' ' ORDER BY stream_version)
		   FROM event_store.read_stream('cart-1')"),
	'1:NULL 2:NULL 3:null 4:array 5:string 6:number',
	'cart-1 in event_store.read_stream: the data as the client wrote it');

$node->stop;
done_testing();

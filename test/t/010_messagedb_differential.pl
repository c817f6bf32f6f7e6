# Differential test of the Message DB compatible API: the real Message DB
# (installed from the npm package @eventide/message-db with its own install
# script, into database "mdb") and ours (CREATE EXTENSION
# event_store_messagedb into database "ours") get the same sequence of calls
# -- writes with and without expected versions, conflicts, duplicate ids,
# reads at positions and batch sizes, categories, correlation, consumer
# groups of several sizes, last message by type, SQL conditions, the
# helpers, the summary views, and bad calls -- as the message_store role,
# and must answer identically, column by column (message times aside).
# Errors are compared by SQLSTATE, message and the fields a client branches
# on (schema, table, column, data type and constraint names).  Messages
# whose data and metadata are not JSON objects (SQL NULL, JSON null,
# arrays, strings, numbers, booleans) are written and read back through
# every read (issue 31).
#
# Needs npm and the npm registry; skipped (with the reason) without them.
use strict;
use warnings;
use File::Temp qw(tempdir);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MessageDBTest qw(fetch_message_db start_both);

my $npm = `command -v npm 2>/dev/null`;
chomp $npm;
plan skip_all => 'npm is not installed' unless $npm;

my $pkgdir = tempdir(CLEANUP => 1);
my ($mdb_install, $why_not) = fetch_message_db($pkgdir);
plan skip_all => $why_not unless $mdb_install;

# The real Message DB in "mdb", ours in "ours" (the message_store role
# Message DB's install created is reused).
my $node = start_both('messagedb', $mdb_install);
# Ours under an event id scope (1.9): 'stream' here, 'store' when run by
# 012_messagedb_differential_store.pl (the duplicate ids then meet the
# partitions' unique indexes).
my $id_scope = $ENV{MESSAGEDB_DIFF_ID_SCOPE} // 'stream';
$node->safe_psql('ours', "SELECT event_store.set_event_id_scope('$id_scope')");
is($node->safe_psql('ours', 'SELECT event_store.event_id_scope()'), $id_scope, "event id scope $id_scope");
my $mdb_version = $node->safe_psql('mdb', 'SELECT message_store.message_store_version()');
is($node->safe_psql('ours', 'SELECT message_store.message_store_version()'),
	$mdb_version, "same message_store_version ($mdb_version)");

# Run one call in one database as the message_store role (whose default
# search_path "$user" finds the schema); return rows or "SQLSTATE: message".
sub call
{
	my ($db, $sql) = @_;
	my ($ret, $stdout, $stderr) = $node->psql(
		$db,
		"\\set VERBOSITY verbose\n$sql",
		extra_params => [ '-U', 'message_store', '-A', '-F', '|', '-P', 'null=<null>' ]);
	if ($stderr =~ /^(?:psql:[^\n]*?)?ERROR:\s+([0-9A-Z]{5}): ([^\n]*)/m)
	{
		my $error = "ERROR $1: $2";
		# the error's fields, as psql prints them (VERBOSITY verbose)
		my @fields = $stderr =~ /^((?:SCHEMA|TABLE|COLUMN|DATATYPE|CONSTRAINT) NAME:\s+[^\n]*)/mg;
		$error .= ' [' . join('; ', @fields) . ']' if @fields;
		return $error;
	}
	return $stdout;
}

my @calls;
my %seen_ids;

# Deterministic pseudo-random choices.
my $seed = 42;
sub rnd { $seed = ($seed * 1103515245 + 12345) % 2147483648; return $seed % $_[0]; }
sub uuid { return sprintf('00000000-0000-4000-8000-%012d', $_[0]); }
sub lit { my $v = shift; return 'NULL' unless defined $v; $v =~ s/'/''/g; return "'$v'"; }

my @categories = ('account', 'order', 'cart');
my @streams;
for my $c (@categories)
{
	push @streams, map { "$c-$_" } (1 .. 6);
	push @streams, "$c-7+inner", "$c-7+other", "$c-8+x", $c;   # compound ids, a category-only stream
}
my %version;    # Message DB version per stream, as we expect it (for valid expected versions)

# Writes: mostly valid, some with expected versions, some conflicts.
my $id = 0;
for my $i (1 .. 260)
{
	my $stream = $streams[ rnd(scalar @streams) ];
	my $type = ('Opened', 'Deposited', 'Withdrawn', 'Closed')[ rnd(4) ];
	my $data = "{\"n\": $i, \"amount\": " . rnd(1000) . "}";
	my $meta = rnd(3) == 0
	  ? "{\"correlationStreamName\": \"" . ('payment', 'invoice')[ rnd(2) ] . "-" . rnd(5) . "\", \"i\": $i}"
	  : rnd(2) ? "{\"i\": $i}" : undef;
	my $cur = exists $version{$stream} ? $version{$stream} : -1;
	my $expected;
	my $kind = rnd(10);
	if ($kind < 3) { $expected = $cur; }                  # right
	elsif ($kind == 3) { $expected = $cur + 1 + rnd(2); } # conflict
	elsif ($kind == 4 && $cur >= 0) { $expected = $cur - 1; } # conflict (stale)
	elsif ($kind == 5 && $cur == -1) { $expected = -1; }  # new stream
	my $msg_id = uuid(++$id);
	$msg_id = uuid(1 + rnd($id - 1)) if $i > 5 && rnd(40) == 0;   # a duplicate id
	push @calls, sprintf("SELECT write_message(%s, %s, %s, %s, %s, %s);",
		lit($msg_id), lit($stream), lit($type), lit($data) . '::jsonb',
		(defined $meta ? lit($meta) . '::jsonb' : 'NULL'),
		(defined $expected ? $expected : 'NULL'));
	my $ok = !$seen_ids{$msg_id} && (!defined $expected || $expected == $cur);
	if ($ok) { $version{$stream} = $cur + 1; $seen_ids{$msg_id} = 1; }
}

# Data and metadata that are not JSON objects (issue 31): SQL NULL, JSON
# null, arrays, strings, numbers, booleans, as Message DB takes them, on
# streams that the reads below read (and in their categories' reads,
# consumer groups and correlation).
my @any_json = (
	[ 'cart-2', 'NULL', 'NULL' ],
	[ 'cart-2', q{'null'::jsonb}, q{'{"correlationStreamName": "payment-9"}'::jsonb} ],
	[ 'cart-3', q{'[1, "two", {"three": [3]}, null]'::jsonb}, q{'[1]'::jsonb} ],
	[ 'cart-3', q{'"x \\" y"'::jsonb}, q{'null'::jsonb} ],
	[ 'order-4', q{'12.50'::jsonb}, q{'"m"'::jsonb} ],
	[ 'order-4', q{'-1e3'::jsonb}, q{'[]'::jsonb} ],
	[ 'account-5', q{'true'::jsonb}, q{'{}'::jsonb} ],
	[ 'account-5', q{'false'::jsonb}, q{'7'::jsonb} ],
	[ 'account-5', q{'[]'::jsonb}, q{'{"a": [1, {"b": null}]}'::jsonb} ],
	[ 'account-6', q{'""'::jsonb}, 'NULL' ],
	[ 'account-6', q{'{}'::jsonb}, q{'[{"correlationStreamName": "payment-1"}]'::jsonb} ]);
for my $w (@any_json)
{
	my ($stream, $data, $meta) = @$w;
	my $cur = exists $version{$stream} ? $version{$stream} : -1;
	my $msg_id = uuid(++$id);
	# every other one with the right expected version
	my $expected = $id % 2 ? $cur : undef;
	push @calls, sprintf("SELECT write_message(%s, %s, 'AnyJson', %s, %s, %s);",
		lit($msg_id), lit($stream), $data, $meta, defined $expected ? $expected : 'NULL');
	$version{$stream} = $cur + 1;
	$seen_ids{$msg_id} = 1;
}
# data::text byte for byte, SQL NULL apart from JSON null, through every read
push @calls,
  "SELECT position, data::text, metadata::text, data IS NULL AS data_null, metadata IS NULL AS metadata_null FROM get_stream_messages('cart-2');",
  "SELECT position, data::text, metadata::text, data IS NULL AS data_null, metadata IS NULL AS metadata_null FROM get_stream_messages('cart-3');",
  "SELECT position, data::text, metadata::text, data IS NULL AS data_null FROM get_category_messages('account', 1, -1) WHERE type = 'AnyJson';",
  "SELECT position, data::text, metadata::text, data IS NULL AS data_null FROM get_last_stream_message('cart-2', 'AnyJson');",
  "SELECT position, data::text, metadata::text, data IS NULL AS data_null FROM get_last_stream_message('order-4');",
  "SET message_store.sql_condition = on; SELECT position, data, metadata FROM get_category_messages('cart', 1, -1, NULL, NULL, NULL, 'data IS NULL OR jsonb_typeof(data) <> ''object''');",
  "SET message_store.sql_condition = on; SELECT position, data, metadata FROM get_stream_messages('account-5', 0, -1, 'jsonb_typeof(metadata) IS DISTINCT FROM ''object''');";
# A duplicate id with data of another kind: the same error and fields.
push @calls,
  "SELECT write_message(" . lit(uuid($id)) . ", 'cart-4', 'AnyJson', NULL);",
  "SELECT write_message(" . lit(uuid($id)) . ", 'cart-4', 'AnyJson', '[1]', '\"m\"');";

# Bad writes, in Message DB's order of checks.
push @calls,
  "SELECT write_message('not-a-uuid', 'account-1', 'X', '{}');",
  "SELECT write_message(NULL, 'account-1', 'X', '{}');",
  "SELECT write_message('" . uuid(9001) . "', NULL, 'X', '{}');",
  "SELECT write_message('" . uuid(9002) . "', 'account-1', NULL, '{}');",
  "SELECT write_message('" . uuid(9003) . "', NULL, 'X', '{}', NULL, 4);",
  "SELECT write_message('" . uuid(9004) . "', 'account-99', 'X', '{}', NULL, -2);",
  "SELECT write_message('not-a-uuid', 'account-98', 'X', '{}', NULL, 3);",
  "SELECT write_message('" . uuid(1) . "', 'account-97', 'X', '{}');",
  "SELECT write_message('" . uuid(9005) . "', 'account-1', 'After', '{\"after\": true}');",
  # NULL arguments with data of any kind: the NOT NULL errors and their fields
  "SELECT write_message(NULL, 'account-1', 'X', NULL);",
  "SELECT write_message('" . uuid(9006) . "', NULL, 'X', '[1]', 'null');",
  "SELECT write_message('" . uuid(9007) . "', 'account-1', NULL, 'null', '\"s\"');",
  "SELECT write_message('not-a-uuid', 'account-1', 'X', '1');";

my $cols = 'id, stream_name, type, position, global_position, data, metadata';

# Helpers on a set of names.
for my $name ('account-1', 'account', 'account-7+inner', 'a-b-c', 'a-', '-a', '', 'x+y', 'ä-ö')
{
	push @calls, sprintf(
		"SELECT hash_64(%s), category(%s), id(%s), cardinal_id(%s), is_category(%s);",
		(lit($name)) x 5);
}
push @calls, "SELECT hash_64(NULL), category(NULL), id(NULL), cardinal_id(NULL), is_category(NULL);";
push @calls, "BEGIN; SELECT acquire_lock('account-3'); SELECT acquire_lock(NULL); COMMIT;";

# Stream reads.
for my $stream (@streams, 'account-404', 'account', 'none')
{
	push @calls, "SELECT stream_version(" . lit($stream) . ");";
	push @calls, "SELECT $cols FROM get_stream_messages(" . lit($stream) . ");";
	push @calls, "SELECT $cols FROM get_last_stream_message(" . lit($stream) . ");";
	push @calls, "SELECT $cols FROM get_last_stream_message(" . lit($stream) . ", 'Deposited');";
}
for my $args ('0, 1', '1, 2', '2, -1', '3, 0', 'NULL, NULL', '-5, 3', '100, 10', '0, -2', '0, 10, NULL')
{
	push @calls, "SELECT $cols FROM get_stream_messages('account-1', $args);";
}
push @calls, "SELECT $cols FROM get_stream_messages(NULL);";
push @calls, "SELECT $cols FROM get_stream_messages('account-1', 0, 10, 'position > 1');";

# Category reads, positions and batch sizes.
for my $c (@categories, 'none', 'account-1', '')
{
	for my $args ('', ', 1, 5', ', 20, 7', ', 100, -1', ', NULL, NULL', ', 50, 0', ', 1, -2')
	{
		push @calls, "SELECT $cols FROM get_category_messages(" . lit($c) . "$args);";
	}
}
push @calls, "SELECT $cols FROM get_category_messages(NULL);";

# Correlation.
for my $corr ('payment', 'invoice', 'none', 'payment-1', '')
{
	push @calls, "SELECT $cols FROM get_category_messages('account', 1, 1000, " . lit($corr) . ");";
}

# Consumer groups of several sizes, every member; with batches and correlation.
for my $size (1 .. 5, 7)
{
	for my $member (0 .. $size - 1)
	{
		push @calls, "SELECT $cols FROM get_category_messages('account', 1, -1, NULL, $member, $size);";
		push @calls, "SELECT $cols FROM get_category_messages('order', 10, 5, NULL, $member, $size);";
		push @calls, "SELECT $cols FROM get_category_messages('cart', 1, 1000, 'payment', $member, $size);";
	}
}
for my $bad ('0, NULL', 'NULL, 2', '0, 0', '-1, 2', '2, 2', '5, 3', '0, 40000', '-1, 0')
{
	push @calls, "SELECT $cols FROM get_category_messages('account', 1, 1000, NULL, $bad);";
}
push @calls, "SELECT $cols FROM get_category_messages('account-1', 1, 1000, 'a-b', 0, 0, 'true');";
push @calls, "SELECT $cols FROM get_category_messages('account', 1, 1000, 'a-b', 0, 0);";

# SQL conditions.
push @calls, "SELECT $cols FROM get_category_messages('account', 1, 1000, NULL, NULL, NULL, 'true');";
push @calls, "SET message_store.sql_condition = on; SELECT $cols FROM get_category_messages('account', 1, 1000, NULL, NULL, NULL, 'type = ''Opened'' AND (data->>''amount'')::int > 500');";
push @calls, "SET message_store.sql_condition = on; SELECT $cols FROM get_category_messages('order', 1, 10, 'payment', 1, 2, 'position >= 1');";
push @calls, "SET message_store.sql_condition = on; SELECT $cols FROM get_stream_messages('account-1', 0, 1000, 'metadata IS NULL');";
push @calls, "SET message_store.sql_condition = off; SELECT $cols FROM get_stream_messages('account-1', 0, 1000, 'true');";

# The messages table (a view here) and the summary views.
push @calls, "SELECT global_position, position, stream_name, type, data, metadata, id FROM messages ORDER BY global_position;";
for my $v ('stream_summary', 'type_summary', 'stream_type_summary', 'type_stream_summary',
	'category_type_summary', 'type_category_summary')
{
	push @calls, "SELECT * FROM $v;";
}

my $n = 0;
my %answers = (error => 0, rows => 0, empty => 0);
my %ours_of;
for my $sql (@calls)
{
	$n++;
	my $theirs = call('mdb', $sql);
	my $ours = call('ours', $sql);
	$ours_of{$sql} = $ours;
	is($ours, $theirs, "call $n: $sql");
	$answers{ $theirs =~ /^ERROR/ ? 'error' : $theirs eq '' ? 'empty' : 'rows' }++;
	note("call $n answers: $theirs") if $ENV{MESSAGEDB_DIFF_VERBOSE};
}
note("answers: $answers{rows} with rows, $answers{empty} empty, $answers{error} errors");
# The comparison means something only if most calls return rows.
cmp_ok($answers{rows}, '>', $answers{error} + $answers{empty}, 'most calls answer with rows');

# The error fields are compared (not lost by the parsing above): a
# duplicate id names the constraint, a NULL column the column.
like($ours_of{"SELECT write_message('" . uuid(1) . "', 'account-97', 'X', '{}');"},
	qr/^ERROR 23505: .*\[SCHEMA NAME:\s+message_store; TABLE NAME:\s+messages; CONSTRAINT NAME:\s+messages_id\]$/,
	'a duplicate id: schema, table and constraint names');
like($ours_of{"SELECT write_message(NULL, 'account-1', 'X', NULL);"},
	qr/^ERROR 23502: .*\[SCHEMA NAME:\s+message_store; TABLE NAME:\s+messages; COLUMN NAME:\s+id\]$/,
	'a NULL id: schema, table and column names');
# Data of any JSON type was written, in both: SQL NULL and JSON null apart.
for my $db ('mdb', 'ours')
{
	is($node->safe_psql($db, q{SELECT string_agg(coalesce(jsonb_typeof(data), 'NULL'), ' ' ORDER BY global_position)
	                             FROM message_store.messages WHERE type = 'AnyJson'}),
		'NULL null array string number number boolean boolean array string object',
		"$db: the messages of any JSON type were written");
}

# Every write this script expected to succeed did, in both.
my $writes = 0;
$writes += $_ + 1 for values %version;
is($node->safe_psql('mdb', 'SELECT count(*) FROM message_store.messages'), $writes + 1,
	"Message DB holds the expected $writes messages (+1 after the bad calls)");

# The Message DB stream is an event_store stream: positions translate.
is($node->safe_psql('ours', q{
	SELECT count(*) FROM message_store.messages m
	  JOIN event_store.events e ON e.event_id = m.id
	 WHERE m.position <> e.stream_version - 1 OR m.global_position <> e.global_position}),
	'0', 'position = stream_version - 1, global_position identical');

$node->stop;
done_testing();

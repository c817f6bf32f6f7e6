# Issue 25 follow-up (1.12 attack surface): the projection worker connects
# as the bootstrap superuser.  A database owner (not a superuser) made a
# schema named event_store with a projection_workers(), tables by the
# registry's names and a run_projection(text, int) of its own; after a
# restart (the launcher looks at every database) the worker called that
# function as superuser.  The worker now serves only a database whose
# event_store schema is the extension's: the owner stays without rolsuper
# and its function is never called, while a database with the extension
# is still served.  docs/security.md, "1.12 attack surface".
#
# Also: projection_workers() showed every database's last failed batch,
# whose message a handler may fill with event data, to a reader of any
# database.  Another database's last_error is now NULL unless the role
# has pg_read_all_stats (superusers do).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $node = PostgreSQL::Test::Cluster->new('worker_fake_schema');
$node->init;
$node->append_conf('postgresql.conf',
    "shared_preload_libraries = 'event_store'\nmax_worker_processes = 16\n");
$node->start;

$node->safe_psql('postgres', q{
CREATE EXTENSION event_store;
CREATE ROLE dbo LOGIN;
CREATE DATABASE fakedb OWNER dbo;
});
# everything the worker looked at, made by the database owner
$node->safe_psql('fakedb', q{
SET ROLE dbo;
CREATE SCHEMA event_store;
CREATE FUNCTION event_store.projection_workers() RETURNS int LANGUAGE sql AS 'SELECT 1';
CREATE TABLE event_store.events (global_position bigint);
CREATE SEQUENCE event_store.global_position_seq;
CREATE TABLE event_store.projection_registry (name text, mode text);
INSERT INTO event_store.projection_registry VALUES ('x', 'async');
CREATE TABLE event_store.projection_retries (name text, state text);
CREATE TABLE event_store.projection_checkpoints (name text);
INSERT INTO event_store.projection_checkpoints VALUES ('x');
CREATE TABLE public.called (by_user text);
CREATE FUNCTION event_store.run_projection(text, int) RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.called VALUES (current_user);
    EXECUTE 'ALTER ROLE dbo SUPERUSER';
    RETURN 0;
END
$$;
});
# and a database with the extension and an async projection, served
$node->safe_psql('postgres', q{
CREATE TABLE seen (n bigint);
CREATE FUNCTION count_it(e event_store.events) RETURNS void LANGUAGE sql AS 'INSERT INTO seen VALUES (e.global_position)';
SELECT event_store.create_projection('counter', 'count_it(event_store.events)', mode => 'async');
SELECT event_store.append_event('c-1', 'Counted', '{}') IS NOT NULL;
});

# a third database whose handler fails with event data in its message
$node->safe_psql('postgres', 'CREATE DATABASE otherdb');
$node->safe_psql('otherdb', q{
CREATE EXTENSION event_store;
CREATE FUNCTION leak(e event_store.events) RETURNS void LANGUAGE plpgsql AS
$$BEGIN RAISE EXCEPTION 'cannot handle %', e.data->>'secret'; END$$;
SELECT event_store.create_projection('leaky', 'leak(event_store.events)', mode => 'async', on_error => 'stop');
SELECT event_store.append_event('l-1', 'Secret', '{"secret": "s3cr3t"}') IS NOT NULL;
});
$node->safe_psql('postgres', 'CREATE ROLE rdr LOGIN IN ROLE event_store_reader');

# the launcher marks every database wanted at its start
$node->restart;

my $fakedb = $node->safe_psql('postgres', "SELECT oid FROM pg_database WHERE datname = 'fakedb'");
my $done = 0;
for (1 .. 600)
{
    $done = $node->safe_psql('postgres', qq{
        SELECT (SELECT rolsuper FROM pg_roles WHERE rolname = 'dbo')
            OR (EXISTS (SELECT FROM event_store.projection_workers() w
                         WHERE w.datid = $fakedb AND w.state = 'none')
                AND (SELECT count(*) FROM seen) > 0)});
    last if $done eq 't';
    usleep(100_000);
}
is($done, 't', 'the worker looked at the database with the fake schema');
is($node->safe_psql('postgres', "SELECT rolsuper FROM pg_roles WHERE rolname = 'dbo'"),
    'f', 'the database owner did not become superuser');
is($node->safe_psql('fakedb', 'SELECT count(*) FROM public.called'),
    '0', "the fake run_projection() was never called");
is($node->safe_psql('postgres', 'SELECT count(*) > 0 FROM seen'),
    't', 'a database with the extension is still served');

my $otherdb = $node->safe_psql('postgres', "SELECT oid FROM pg_database WHERE datname = 'otherdb'");
my $err = '';
for (1 .. 600)
{
    $err = $node->safe_psql('postgres',
        "SELECT coalesce(last_error, '') FROM event_store.projection_workers() WHERE datid = $otherdb");
    last if $err =~ /s3cr3t/;
    usleep(100_000);
}
like($err, qr/leaky: cannot handle s3cr3t/, "a superuser sees another database's last error");
is($node->safe_psql('postgres',
        "SET ROLE rdr; SELECT count(*) FROM event_store.projection_workers() WHERE datid = $otherdb AND last_error IS NULL"),
    '1', "a reader of another database sees the row without its last error");
is($node->safe_psql('otherdb',
        "SET ROLE rdr; SELECT last_error ~ 's3cr3t' FROM event_store.projection_workers() WHERE datid = $otherdb"),
    't', 'a reader of that database sees it');

$node->stop;
done_testing();

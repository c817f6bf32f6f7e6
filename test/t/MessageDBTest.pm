# What the Message DB TAP tests (010_messagedb_differential.pl,
# 011_messagedb_client.pl) share: the real Message DB fetched from the npm
# registry (@eventide/message-db, database scripts only), and one cluster
# with it in database "mdb" (its own install script) and
# event_store_messagedb in database "ours".
package MessageDBTest;

use strict;
use warnings;
use Exporter 'import';
use PostgreSQL::Test::Cluster;
use Test::More;

our @EXPORT_OK = qw(npm_env npm_error fetch_message_db start_both);

# npm's environment for a throw-away directory: its own HOME and cache.
sub npm_env
{
	my $dir = shift;
	return "HOME='$dir' npm_config_cache='$dir/.npm' npm_config_update_notifier=false";
}

# npm's error lines, on one line (a skip reason is one line).
sub npm_error
{
	my @lines = grep { /\S/ } split /\n/, shift;
	my @errors = map { s/^npm (?:ERR!|error)\s*//r } grep { /^npm (?:ERR!|error)/ } @lines;
	@errors = @lines unless @errors;
	return join('; ', @errors[ 0 .. ($#errors < 3 ? $#errors : 3) ]);
}

# Fetch and unpack @eventide/message-db into $dir: (path of its install.sh,
# undef), or (undef, why not) when the registry cannot be reached.
sub fetch_message_db
{
	my $dir = shift;
	my $env = npm_env($dir);
	my $pack = `cd '$dir' && $env npm pack --loglevel=error \@eventide/message-db 2>&1`;
	my ($tarball) = glob("$dir/eventide-message-db-*.tgz");
	return (undef, "could not fetch \@eventide/message-db from the npm registry: " . npm_error($pack))
	  unless $tarball;
	system("tar", "xzf", $tarball, "-C", $dir) == 0 or die "cannot unpack $tarball";
	my $install = "$dir/package/database/install.sh";
	die "no install.sh in $tarball" unless -f $install;
	return ($install, undef);
}

# A started cluster with event_store preloaded, the real Message DB in
# "mdb" (its install script creates the message_store role and the
# database; one test assertion) and ours in "ours" (the role is reused).
sub start_both
{
	my ($name, $mdb_install) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init;
	$node->append_conf('postgresql.conf', "shared_preload_libraries = 'event_store'\n");
	$node->start;
	{
		local $ENV{PGHOST} = $node->host;
		local $ENV{PGPORT} = $node->port;
		local $ENV{DATABASE_NAME} = 'mdb';
		my $out = `bash '$mdb_install' 2>&1`;
		is($?, 0, 'Message DB installed from the npm package') or diag($out);
	}
	$node->safe_psql('postgres', 'CREATE DATABASE ours');
	$node->safe_psql('ours', 'CREATE EXTENSION event_store_messagedb CASCADE');
	return $node;
}

1;

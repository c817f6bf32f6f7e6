/*-------------------------------------------------------------------------
 *
 * messagedb.c
 *	  The C parts of the Message DB compatible API (extension
 *	  event_store_messagedb, schema message_store): write_message.  Its
 *	  hash_64 and consumer group member live in consumer_group.c, shared
 *	  with event_store's subscriptions.
 *
 *	  write_message keeps Message DB 1.3's contract -- 0-based positions,
 *	  version -1 for "no stream", its error texts and SQLSTATEs, message ids
 *	  unique across the store -- and writes through event_store.append_event,
 *	  so a Message DB stream is an event_store stream (position = version - 1).
 *	  Instead of Message DB's category-wide advisory lock, a write with an
 *	  expected version locks only its stream's row (or, for a stream that
 *	  does not exist yet, an advisory lock on the stream name).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/memutils.h"
#include "utils/uuid.h"

#include "event_store.h"
#include "spi_util.h"
#include "append.h"
#include "append_direct.h"
#include "partition.h"

PG_FUNCTION_INFO_V1(es_mdb_write_message);

/* Class id of the advisory lock taken while a new stream is checked. */
#define MDB_NEW_STREAM_LOCK_CLASS	0x4D444257	/* 'MDBW' */
/* Class id of the advisory lock on a message id while it is checked and written. */
#define MDB_MESSAGE_ID_LOCK_CLASS	0x4D444249	/* 'MDBI' */

/* Statements, prepared once per backend. */
static SPIPlanPtr plan_lock_version = NULL;
static SPIPlanPtr plan_id_exists = NULL;
static SPIPlanPtr plan_burn_position = NULL;

static void
prepare_plans(void)
{
	if (plan_lock_version == NULL)
	{
		Oid			types[1] = {TEXTOID};

		plan_lock_version = es_keep_plan("SELECT version FROM event_store.streams "
									  "WHERE stream_id OPERATOR(pg_catalog.=) $1 FOR NO KEY UPDATE",
									  1, types);
	}
	if (plan_id_exists == NULL)
	{
		Oid			types[1] = {UUIDOID};

		plan_id_exists = es_keep_plan("SELECT 1 FROM event_store.events WHERE event_id OPERATOR(pg_catalog.=) $1 LIMIT 1",
								   1, types);
	}
	if (plan_burn_position == NULL)
		plan_burn_position = es_keep_plan("SELECT pg_catalog.nextval('event_store.global_position_seq'::pg_catalog.regclass)",
									   0, NULL);
}

/*
 * Lock the stream and return its Message DB version (-1: no stream).  An
 * existing stream's row is locked as event_store.append locks it; for a
 * stream without a row, an advisory lock on its name serializes the
 * writers that expect it to be new, and the row is looked up again (a
 * READ COMMITTED statement sees what the lock's previous holder committed).
 */
static int64
lock_stream_version(text *stream_name)
{
	Datum		args[1];
	bool		isnull;

	args[0] = PointerGetDatum(stream_name);
	for (int attempt = 0; attempt < 2; attempt++)
	{
		int			rc = SPI_execute_plan(plan_lock_version, args, NULL, false, 1);

		es_spi_check(rc, SPI_OK_SELECT, "stream lock");
		if (SPI_processed > 0)
			return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
											   SPI_tuptable->tupdesc, 1, &isnull)) - 1;
		if (attempt == 0)
			DirectFunctionCall2(pg_advisory_xact_lock_int4,
								Int32GetDatum(MDB_NEW_STREAM_LOCK_CLASS),
								Int32GetDatum((int32) hash_bytes((const unsigned char *) VARDATA_ANY(stream_name),
																 VARSIZE_ANY_EXHDR(stream_name))));
	}
	return -1;
}

/* Message DB's version conflict error: clients match on its text. */
static void
wrong_expected_version(int64 expected, const char *stream, const char *current)
{
	ereport(ERROR,
			(errcode(ERRCODE_RAISE_EXCEPTION),
			 errmsg("Wrong expected version: " INT64_FORMAT " (Stream: %s, Stream Version: %s)",
					expected, stream, current),
			 errhint("Read the stream again and retry with its current version.")));
}

/*
 * Message DB assigns global_position (a DEFAULT nextval) before the insert
 * checks NOT NULL and the unique message id, so those errors leave a hole
 * in its positions.  Leave the same hole, so that both stores keep giving
 * the same positions to the same sequence of calls.
 */
static void
burn_position(void)
{
	int			rc = SPI_execute_plan(plan_burn_position, NULL, NULL, false, 1);

	es_spi_check(rc, SPI_OK_SELECT, "nextval");
}

/*
 * Message DB's error for a message id already in the store: its unique
 * index's, with the fields a client branches on (constraint_name
 * "messages_id", table_name "messages", schema_name "message_store").
 */
static void
duplicate_message_id(pg_uuid_t *id)
{
	ereport(ERROR,
			(errcode(ERRCODE_UNIQUE_VIOLATION),
			 errmsg("duplicate key value violates unique constraint \"messages_id\""),
			 errdetail("Key (id)=(%s) already exists.",
					   DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(id)))),
			 errhint("Every message needs a new id."),
			 err_generic_string(PG_DIAG_SCHEMA_NAME, "message_store"),
			 err_generic_string(PG_DIAG_TABLE_NAME, "messages"),
			 err_generic_string(PG_DIAG_CONSTRAINT_NAME, "messages_id")));
}

/*
 * Message DB's NOT NULL violation on its messages table, with the column,
 * table and schema names its INSERT reports.
 */
static void
null_column(const char *column)
{
	burn_position();
	ereport(ERROR,
			(errcode(ERRCODE_NOT_NULL_VIOLATION),
			 errmsg("null value in column \"%s\" of relation \"messages\" violates not-null constraint",
					column),
			 errdetail("The %s of a message must not be null.", column),
			 err_generic_string(PG_DIAG_SCHEMA_NAME, "message_store"),
			 err_generic_string(PG_DIAG_TABLE_NAME, "messages"),
			 err_generic_string(PG_DIAG_COLUMN_NAME, column)));
}

/*
 * message_store.write_message(id varchar, stream_name varchar, type varchar,
 *     data jsonb, metadata jsonb DEFAULT NULL, expected_version bigint
 *     DEFAULT NULL) RETURNS bigint
 *
 * Writes one message and returns its 0-based position.  The checks come in
 * Message DB's order: expected version, id syntax, NOT NULL columns, unique
 * id; then event_store.append_event validates and writes.  data and
 * metadata are stored as given: any JSON value or NULL (docs/messagedb.md,
 * "Data and metadata of any JSON type").
 */
Datum
es_mdb_write_message(PG_FUNCTION_ARGS)
{
	bool		stream_null = PG_ARGISNULL(1);
	text	   *stream_name = stream_null ? NULL : PG_GETARG_TEXT_PP(1);
	bool		has_expected = !PG_ARGISNULL(5);
	int64		expected = has_expected ? PG_GETARG_INT64(5) : 0;
	pg_uuid_t  *id = NULL;
	int64		version;
	TimestampTz recorded_at = 0;
	Oid			unique_partition = InvalidOid;
	MemoryContext oldcxt;

	es_spi_connect();
	oldcxt = CurrentMemoryContext;
	prepare_plans();

	/*
	 * Message ids are unique store-wide, checked by a lookup (the log has
	 * no unique index across partitions).  Two writers of one id would both
	 * pass the lookup: the first to lock the id wins, and the other, in its
	 * next statement, sees what the first committed.  Keyed by the id's
	 * text as given (clients send canonical ids), and taken before any
	 * stream lock, so that the order of locks is the same for every writer.
	 */
	if (!PG_ARGISNULL(0))
	{
		text	   *id_text = PG_GETARG_TEXT_PP(0);

		DirectFunctionCall2(pg_advisory_xact_lock_int4,
							Int32GetDatum(MDB_MESSAGE_ID_LOCK_CLASS),
							Int32GetDatum((int32) hash_bytes((const unsigned char *) VARDATA_ANY(id_text),
															 VARSIZE_ANY_EXHDR(id_text))));
	}

	if (has_expected)
	{
		int64		current = stream_null ? -1 : lock_stream_version(stream_name);

		if (expected != current)
			wrong_expected_version(expected,
								   stream_null ? "<NULL>" : text_to_cstring(stream_name),
								   psprintf(INT64_FORMAT, current));
	}

	if (!PG_ARGISNULL(0))
		id = DatumGetUUIDP(DirectFunctionCall1(uuid_in,
											   CStringGetDatum(TextDatumGetCString(PG_GETARG_DATUM(0)))));
	if (stream_null)
		null_column("stream_name");
	if (PG_ARGISNULL(2))
		null_column("type");
	if (id == NULL)
		null_column("id");

	{
		Datum		args[1] = {UUIDPGetDatum(id)};
		bool		exists;

		/*
		 * Each partition's index probed directly (append_direct.c), or the
		 * query.  Under the event id scope 'store' the partition the message
		 * goes into has a unique event_id index, and the insert's own check
		 * stands in for its probe.
		 */
		unique_partition = es_event_id_unique_partition(GetCurrentTimestamp());
		if (!es_direct_event_id_exists(id, unique_partition, &exists))
		{
			int			rc = SPI_execute_plan(plan_id_exists, args, NULL, false, 1);

			es_spi_check(rc, SPI_OK_SELECT, "message id lookup");
			exists = SPI_processed > 0;
			unique_partition = InvalidOid;	/* the query looked everywhere */
		}
		if (exists)
		{
			burn_position();
			duplicate_message_id(id);
		}
	}
	/*
	 * The id is new (looked up above): write without the lookups that only
	 * serve idempotent retries.  Our expected versions: 0 = no stream,
	 * N > 0 = exactly N.
	 */
	PG_TRY();
	{
		version = es_append_new_event(stream_name, PG_GETARG_DATUM(2), true,
									  PG_ARGISNULL(3), PG_ARGISNULL(3) ? (Datum) 0 : PG_GETARG_DATUM(3),
									  PG_ARGISNULL(4), PG_ARGISNULL(4) ? (Datum) 0 : PG_GETARG_DATUM(4),
									  has_expected, expected + 1, id, &recorded_at);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(oldcxt);
		edata = CopyErrorData();
		if (es_is_event_id_index_violation(edata))
		{
			/* the unique event_id index of the partition (scope 'store') */
			FlushErrorState();
			duplicate_message_id(id);
		}
		if (edata->sqlerrcode != ERRCODE_ES_WRONG_EXPECTED_VERSION)
		{
			FreeErrorData(edata);
			PG_RE_THROW();
		}

		/*
		 * Only a writer that bypassed our locks (event_store.append on the
		 * same new stream) gets here: give Message DB's error text, with
		 * the version the append saw.
		 */
		{
			const char *at = edata->detail ? strstr(edata->detail, "stream is at version ") : NULL;
			char	   *current = "-1";

			if (at != NULL)
			{
				int64		v = pg_strtoint64(pnstrdup(at + strlen("stream is at version "),
													   strspn(at + strlen("stream is at version "), "0123456789")));

				current = psprintf(INT64_FORMAT, v - 1);
			}
			FlushErrorState();
			wrong_expected_version(expected, text_to_cstring(stream_name), current);
		}
	}
	PG_END_TRY();

	/* The message went into another partition than the one left out above: look there now. */
	if (OidIsValid(unique_partition) &&
		es_known_partition_for(es_events_relid(false), recorded_at) != unique_partition)
	{
		bool		exists;

		es_direct_event_id_in_partition(id, unique_partition, &exists);
		if (exists)
			duplicate_message_id(id);
	}
	SPI_finish();

	PG_RETURN_INT64(version - 1);
}

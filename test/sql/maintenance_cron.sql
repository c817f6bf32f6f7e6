-- Maintenance scheduled with pg_cron (1.6).  The test instance preloads
-- pg_cron with cron.database_name = contrib_regression and background
-- workers, so a job scheduled here runs here.  pg_cron 1.4 schedules by
-- the minute: this test waits up to 75 seconds for the job to run.
SET timezone = 'UTC';
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pg_cron;
RESET client_min_messages;
SELECT current_setting('cron.database_name') = current_database() AS cron_lives_here;

-- Schedules pg_cron rejects: a clear error, nothing scheduled.
SELECT event_store.schedule_maintenance('every minute');
SELECT event_store.schedule_maintenance('61 * * * *');
SELECT event_store.schedule_maintenance('');
SELECT count(*) AS jobs FROM cron.job WHERE command LIKE '%event_store.run_maintenance%';
SELECT event_store.unschedule_maintenance() AS removed_nothing;

-- One named job, replaced by a second call.
SELECT event_store.schedule_maintenance('*/5 * * * *') IS NOT NULL AS scheduled;
SELECT event_store.schedule_maintenance() IS NOT NULL AS rescheduled;
SELECT jobname, schedule, command, database FROM cron.job WHERE command LIKE '%event_store.run_maintenance%';

-- Wait for pg_cron to run it.
DELETE FROM event_store.maintenance_status;
DO $$
BEGIN
    FOR i IN 1 .. 75 LOOP
        EXIT WHEN EXISTS (SELECT 1 FROM cron.job_run_details d JOIN cron.job j USING (jobid)
                           WHERE j.jobname = event_store._maintenance_job_name()
                             AND d.status IN ('succeeded', 'failed') );
        PERFORM pg_sleep(1);
    END LOOP;
END
$$;
SELECT d.status, d.return_message, d.command
  FROM cron.job_run_details d JOIN cron.job j USING (jobid)
 WHERE j.jobname = event_store._maintenance_job_name()
 ORDER BY d.start_time LIMIT 1;
-- The job ran maintenance: every step recorded its result.
SELECT step, error FROM event_store.maintenance_status ORDER BY ran_at;

SELECT event_store.unschedule_maintenance() AS removed;
SELECT count(*) AS jobs FROM cron.job WHERE command LIKE '%event_store.run_maintenance%';

-- event_store 1.12 -> 1.13.  Each section names the issue and item it
-- belongs to; sections are independent of one another.
\echo Use "ALTER EXTENSION event_store UPDATE TO '1.13'" to load this file. \quit

-- No query reads purchases by member: a purchase is found by id or by (store, receipt number), and a
-- member's history is read from the ledger. The index only cost every purchase an insert on a page
-- picked by member, a random one, whose first change after each checkpoint writes the whole page to
-- the WAL. Measured with pgbench on the development harness (the purchase insert as the service sends
-- it, 4 clients, each 10 s window after a checkpoint, alternating): 0.773-0.786 ms of machine CPU per
-- insert with the index, 0.648-0.697 without. A feature that lists a member's purchases should add
-- the index its query needs.
DROP INDEX ix_purchases_member;

-- No query reads purchases by member (see db/postgres/0005): the index only cost every purchase an insert.
DROP INDEX ix_purchases_member;

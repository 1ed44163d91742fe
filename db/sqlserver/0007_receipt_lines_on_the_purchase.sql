-- A receipt's lines are kept on the purchase as one JSON document instead of a row each
-- (see db/postgres/0007). The default fills the rows that are there and is dropped once they hold their lines.
ALTER TABLE dbo.purchases ADD lines_json nvarchar(max) NOT NULL CONSTRAINT df_purchases_lines_json DEFAULT N'[]';
GO
UPDATE p
SET lines_json = (
    -- Bracketed: LINENO is a reserved word in T-SQL.
    SELECT l.line_no AS [lineNo], l.sku AS [sku], l.category AS [category], l.quantity AS [quantity], l.amount_minor AS [amountMinor],
           l.refunded_quantity AS [refundedQuantity], l.refunded_minor AS [refundedMinor]
    FROM dbo.purchase_lines AS l
    WHERE l.purchase_id = p.id
    ORDER BY l.line_no
    FOR JSON PATH, INCLUDE_NULL_VALUES)
FROM dbo.purchases AS p
WHERE EXISTS (SELECT 1 FROM dbo.purchase_lines AS x WHERE x.purchase_id = p.id);
ALTER TABLE dbo.purchases DROP CONSTRAINT df_purchases_lines_json;
DROP TABLE dbo.purchase_lines;

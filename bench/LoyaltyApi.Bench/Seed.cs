using System.Data.Common;
using System.Security.Cryptography;
using System.Text;
using Dapper;
using Microsoft.Data.Sqlite;
using Npgsql;

namespace LoyaltyApi.Bench;

/// <summary>
/// Seeds a realistic program straight into a migrated database: a brand with six stores, a partner
/// with two, one pos key per store, and N members each with a card, an available lot of points and
/// one earlier receipt (with its line and idempotency record); on PostgreSQL every twentieth receipt was
/// also refunded. The history matters: statistics of empty tables make PostgreSQL's cached generic plans
/// scan them sequentially until autovacuum analyses them again, which is not how a running program
/// behaves (without seeded refunds, a refund's dedupe look-up read the whole refunds table: 70 buffers
/// and 280 µs a call, growing with every refund, against 5 buffers by the unique index).
/// </summary>
public static class Seed
{
    public const long CardBase = 70_000_000_000;
    public const int PointsPerMember = 5_000;

    public static async Task<string[]> RunAsync(string provider, string connectionString, int members, string keysFile)
    {
        await using DbConnection c = provider == "Postgres" ? new NpgsqlConnection(connectionString) : new SqliteConnection(connectionString);
        await c.OpenAsync();
        var pg = c is NpgsqlConnection;
        string Ts(DateTime t) => pg ? t.ToString("yyyy-MM-dd HH:mm:ss.fffffff") + "+00" : t.ToString("yyyy-MM-dd HH:mm:ss.fffffff");
        var now = DateTime.UtcNow;
        var created = Ts(now.AddDays(-30));
        // Within the service's retention of Idempotency-Keys (30 days): keys as old as the program would be
        // purged when the service starts, a month's backlog deleted during the bench's cold start.
        var keysCreated = Ts(now.AddDays(-7));
        var expires = Ts(now.AddDays(300).Date);

        await using (var tx = await c.BeginTransactionAsync())
        {
            await c.ExecuteAsync($"INSERT INTO merchants (id, name, kind, created_at) VALUES (1, 'Brand', 'brand', '{created}'), (2, 'Partner', 'partner', '{created}')", transaction: tx);
            for (var s = 1; s <= 8; s++)
            {
                await c.ExecuteAsync($"INSERT INTO stores (id, merchant_id, code, name, created_at) VALUES ({s}, {(s <= 6 ? 1 : 2)}, 'S{s}', 'Store {s}', '{created}')", transaction: tx);
            }
            await tx.CommitAsync();
        }

        var keys = new string[8];
        for (var s = 1; s <= 8; s++)
        {
            var prefix = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(6));
            var secret = Convert.ToBase64String(RandomNumberGenerator.GetBytes(32)).TrimEnd('=').Replace('+', '-').Replace('/', '_');
            keys[s - 1] = $"lk_{prefix}_{secret}";
            var hash = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(keys[s - 1])));
            await c.ExecuteAsync($"INSERT INTO api_clients (id, name, role, merchant_id, store_id, key_prefix, key_hash, created_at) VALUES ({s}, 'till {s}', 'pos', {(s <= 6 ? 1 : 2)}, {s}, '{prefix}', '{hash}', '{created}')");
        }
        await File.WriteAllLinesAsync(keysFile, keys);

        if (pg)
        {
            // Server-side generation: 100 000 members load in seconds.
            await c.ExecuteAsync($"""
                INSERT INTO members (id, phone, name, referral_code, status, enrolled_at)
                SELECT g, '+1555' || lpad(g::text, 7, '0'), 'Member ' || g, 'R' || lpad(g::text, 7, '0'), 'active', '{created}'
                FROM generate_series(1, {members}) g;
                INSERT INTO point_accounts (member_id, debt_points, version, updated_at) SELECT g, 0, 0, '{created}' FROM generate_series(1, {members}) g;
                INSERT INTO cards (id, card_number, member_id, status, issued_at) SELECT g, ({CardBase} + g)::text, g, 'active', '{created}' FROM generate_series(1, {members}) g;
                INSERT INTO point_lots (id, member_id, source, granted_points, remaining_points, expired_points, reversed_points, available_at, expires_at, status, created_at)
                SELECT g, g, 'adjustment', {PointsPerMember}, {PointsPerMember}, 0, 0, '{created}', '{expires}', 'active', '{created}' FROM generate_series(1, {members}) g;
                INSERT INTO ledger_entries (id, member_id, entry_type, points, lot_id, reason, actor, created_at)
                SELECT g, g, 'adjustment', {PointsPerMember}, g, 'bench seed', 'bench', '{created}' FROM generate_series(1, {members}) g;
                INSERT INTO purchases (id, member_id, merchant_id, store_id, receipt_number, card_id, occurred_at, recorded_at, currency,
                    total_minor, amount_due_minor, points_redeemed, redeemed_value_minor, points_earned, earn_lot_id, refunded_minor,
                    points_reversed, points_returned, lines_json, request_hash, response_json)
                SELECT g, g, CASE WHEN g % 8 < 6 THEN 1 ELSE 2 END, g % 8 + 1, 'H' || g, g, '{created}', '{created}', 'USD',
                    1000, 1000, 0, 0, 0, NULL, 0, 0, 0,
                    json_build_array(json_build_object('lineNo', 1, 'sku', 'SKU-' || (g % 500), 'category', 'cat-' || (g % 20), 'quantity', 1,
                        'amountMinor', 1000, 'refundedQuantity', CASE WHEN g % 20 = 0 THEN 1 ELSE 0 END,
                        'refundedMinor', CASE WHEN g % 20 = 0 THEN 1000 ELSE 0 END))::text,
                    md5(g::text) || md5(g::text), chr(123) || chr(125) FROM generate_series(1, {members}) g;
                INSERT INTO refunds (id, purchase_id, member_id, store_id, refund_number, occurred_at, recorded_at, amount_minor,
                    points_reversed, points_returned, request_hash, response_json)
                SELECT g / 20, g, g, g % 8 + 1, 'HR' || g, '{created}', '{created}', 1000, 0, 0, md5(g::text) || md5(g::text), chr(123) || chr(125)
                FROM generate_series(20, {members}, 20) g;
                INSERT INTO refund_lines (refund_id, line_no, quantity, amount_minor) SELECT g / 20, 1, 1, 1000 FROM generate_series(20, {members}, 20) g;
                UPDATE purchases SET refunded_minor = 1000 WHERE id % 20 = 0;
                INSERT INTO idempotency_keys (client_key, idem_key, operation, request_hash, status_code, response_json, created_at)
                SELECT 'client:' || (g % 8 + 1), 'H' || g, 'purchase', md5(g::text) || md5(g::text), 201, chr(123) || chr(125), '{keysCreated}' FROM generate_series(1, {members}) g;
                """, commandTimeout: 600);
            foreach (var table in new[] { "merchants", "stores", "api_clients", "members", "cards", "point_lots", "ledger_entries", "purchases", "refunds" })
            {
                await c.ExecuteAsync($"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT MAX(id) FROM {table}))");
            }
            await c.ExecuteAsync("VACUUM ANALYZE", commandType: System.Data.CommandType.Text);
        }
        else
        {
            await using var tx = await c.BeginTransactionAsync();
            var statements = new[]
            {
                "INSERT INTO members (id, phone, name, referral_code, status, enrolled_at) VALUES (@G, '+1555' || substr('0000000' || @G, -7), 'Member ' || @G, 'R' || substr('0000000' || @G, -7), 'active', @Created)",
                "INSERT INTO point_accounts (member_id, debt_points, version, updated_at) VALUES (@G, 0, 0, @Created)",
                $"INSERT INTO cards (id, card_number, member_id, status, issued_at) VALUES (@G, CAST({CardBase} + @G AS TEXT), @G, 'active', @Created)",
                $"INSERT INTO point_lots (id, member_id, source, granted_points, remaining_points, expired_points, reversed_points, available_at, expires_at, status, created_at) VALUES (@G, @G, 'adjustment', {PointsPerMember}, {PointsPerMember}, 0, 0, @Created, @Expires, 'active', @Created)",
                $"INSERT INTO ledger_entries (id, member_id, entry_type, points, lot_id, reason, actor, created_at) VALUES (@G, @G, 'adjustment', {PointsPerMember}, @G, 'bench seed', 'bench', @Created)",
                "INSERT INTO purchases (id, member_id, merchant_id, store_id, receipt_number, card_id, occurred_at, recorded_at, currency, total_minor, amount_due_minor, points_redeemed, redeemed_value_minor, points_earned, earn_lot_id, refunded_minor, points_reversed, points_returned, lines_json, request_hash, response_json) VALUES (@G, @G, CASE WHEN @G % 8 < 6 THEN 1 ELSE 2 END, @G % 8 + 1, 'H' || @G, @G, @Created, @Created, 'USD', 1000, 1000, 0, 0, 0, NULL, 0, 0, 0, json_array(json_object('lineNo', 1, 'sku', 'SKU-' || (@G % 500), 'category', 'cat-' || (@G % 20), 'quantity', 1, 'amountMinor', 1000, 'refundedQuantity', 0, 'refundedMinor', 0)), 'h' || @G, '{}')",
                "INSERT INTO idempotency_keys (client_key, idem_key, operation, request_hash, status_code, response_json, created_at) VALUES ('client:' || (@G % 8 + 1), 'H' || @G, 'purchase', 'h' || @G, 201, '{}', @KeysCreated)",
            };
            foreach (var sql in statements)
            {
                await using var cmd = c.CreateCommand();
                cmd.Transaction = tx;
                cmd.CommandText = sql;
                var g = cmd.CreateParameter(); g.ParameterName = "@G"; cmd.Parameters.Add(g);
                var cr = cmd.CreateParameter(); cr.ParameterName = "@Created"; cr.Value = created; cmd.Parameters.Add(cr);
                var ex = cmd.CreateParameter(); ex.ParameterName = "@Expires"; ex.Value = expires; cmd.Parameters.Add(ex);
                var kc = cmd.CreateParameter(); kc.ParameterName = "@KeysCreated"; kc.Value = keysCreated; cmd.Parameters.Add(kc);
                cmd.Prepare();
                for (var i = 1; i <= members; i++)
                {
                    g.Value = i;
                    await cmd.ExecuteNonQueryAsync();
                }
            }
            await tx.CommitAsync();
            await c.ExecuteAsync("ANALYZE", commandType: System.Data.CommandType.Text);
        }
        return keys;
    }
}

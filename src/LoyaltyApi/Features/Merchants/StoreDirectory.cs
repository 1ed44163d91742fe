using System.Collections.Concurrent;
using System.Data.Common;
using Dapper;
using LoyaltyApi.Infrastructure;

namespace LoyaltyApi.Features.Merchants;

/// <summary>
/// Which merchant owns each store, kept in memory: a store never changes merchant, so every
/// purchase can check the caller's scope without a query.
/// </summary>
public sealed class StoreDirectory
{
    public sealed class StoreRow
    {
        public long Id { get; set; }
        public long MerchantId { get; set; }
    }

    private const string StoreSql = """
        SELECT id, merchant_id
        FROM stores
        WHERE id = @StoreId
        """;

    private readonly ConcurrentDictionary<long, StoreRow> _stores = new();

    /// <summary>The store, when it exists and the caller may act for it; otherwise a 422 or 403 rejection.</summary>
    public async Task<StoreRow> AuthorizeAsync(Db db, DbConnection connection, DbTransaction? tx, Caller caller, long storeId, CancellationToken ct)
    {
        if (!_stores.TryGetValue(storeId, out var store))
        {
            store = await connection.QuerySingleOrDefaultAsync<StoreRow>(new CommandDefinition(db.Sql(StoreSql), new { StoreId = storeId }, tx, cancellationToken: ct))
                    ?? throw DomainRejection.Unprocessable("unknown_store", "No store has this id.", "storeId");
            _stores.TryAdd(storeId, store);
        }
        if (!caller.MayActForStore(store.MerchantId, store.Id))
        {
            throw new DomainRejection(403, "store_not_allowed", "This API key may not act for that store.", "storeId");
        }
        return store;
    }
}

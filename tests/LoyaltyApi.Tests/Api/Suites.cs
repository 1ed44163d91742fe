using LoyaltyApi.Tests.Infrastructure;
using Xunit;

// Every API test class runs twice: on a fresh SQLite file and on PostgreSQL (reset with Respawn).
namespace LoyaltyApi.Tests.Api.Sqlite
{
    public sealed class SqlitePurchaseTests(SqliteApiFixture fx) : PurchaseTests(fx), IClassFixture<SqliteApiFixture>;
    public sealed class SqliteRefundTests(SqliteApiFixture fx) : RefundTests(fx), IClassFixture<SqliteApiFixture>;
    public sealed class SqlitePointsLifecycleTests(SqliteApiFixture fx) : PointsLifecycleTests(fx), IClassFixture<SqliteApiFixture>;
    public sealed class SqliteMemberAndCardTests(SqliteApiFixture fx) : MemberAndCardTests(fx), IClassFixture<SqliteApiFixture>;
    public sealed class SqliteSecurityTests(SqliteApiFixture fx) : SecurityTests(fx), IClassFixture<SqliteApiFixture>;
    public sealed class SqlitePlatformTests(SqliteApiFixture fx) : PlatformTests(fx), IClassFixture<SqliteApiFixture>;
    public sealed class SqliteSqlBatchTests(SqliteApiFixture fx) : SqlBatchTests(fx), IClassFixture<SqliteApiFixture>;
    public sealed class SqliteListPagingTests(SqliteApiFixture fx) : ListPagingTests(fx), IClassFixture<SqliteApiFixture>;
    public sealed class SqliteIdempotencyRetentionTests(SqliteApiFixture fx) : IdempotencyRetentionTests(fx), IClassFixture<SqliteApiFixture>;
}

namespace LoyaltyApi.Tests.Api.Postgres
{
    [Collection(PostgresCollection.Name), Trait("Database", "Postgres")]
    public sealed class PostgresPurchaseTests(PostgresApiFixture fx) : PurchaseTests(fx), IClassFixture<PostgresApiFixture>;
    [Collection(PostgresCollection.Name), Trait("Database", "Postgres")]
    public sealed class PostgresRefundTests(PostgresApiFixture fx) : RefundTests(fx), IClassFixture<PostgresApiFixture>;
    [Collection(PostgresCollection.Name), Trait("Database", "Postgres")]
    public sealed class PostgresPointsLifecycleTests(PostgresApiFixture fx) : PointsLifecycleTests(fx), IClassFixture<PostgresApiFixture>;
    [Collection(PostgresCollection.Name), Trait("Database", "Postgres")]
    public sealed class PostgresMemberAndCardTests(PostgresApiFixture fx) : MemberAndCardTests(fx), IClassFixture<PostgresApiFixture>;
    [Collection(PostgresCollection.Name), Trait("Database", "Postgres")]
    public sealed class PostgresSecurityTests(PostgresApiFixture fx) : SecurityTests(fx), IClassFixture<PostgresApiFixture>;
    [Collection(PostgresCollection.Name), Trait("Database", "Postgres")]
    public sealed class PostgresPlatformTests(PostgresApiFixture fx) : PlatformTests(fx), IClassFixture<PostgresApiFixture>;
    [Collection(PostgresCollection.Name), Trait("Database", "Postgres")]
    public sealed class PostgresSqlBatchTests(PostgresApiFixture fx) : SqlBatchTests(fx), IClassFixture<PostgresApiFixture>;
    [Collection(PostgresCollection.Name), Trait("Database", "Postgres")]
    public sealed class PostgresListPagingTests(PostgresApiFixture fx) : ListPagingTests(fx), IClassFixture<PostgresApiFixture>;
    [Collection(PostgresCollection.Name), Trait("Database", "Postgres")]
    public sealed class PostgresIdempotencyRetentionTests(PostgresApiFixture fx) : IdempotencyRetentionTests(fx), IClassFixture<PostgresApiFixture>;
}

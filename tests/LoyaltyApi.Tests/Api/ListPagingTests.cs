using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using LoyaltyApi.Tests.Infrastructure;
using Xunit;

namespace LoyaltyApi.Tests.Api;

public abstract class ListPagingTests(ApiFixture fx) : ApiTests(fx)
{
    private async Task<long> CreateMerchantWithStoresAsync(int stores)
    {
        var merchant = await ReadAsync(await Fx.Admin.PostAsJsonAsync("/v1/merchants", new { name = Fx.Unique("Paged chain "), kind = "Partner" }), HttpStatusCode.Created);
        var id = merchant.GetProperty("id").GetInt64();
        for (var i = 0; i < stores; i++)
        {
            await ReadAsync(await Fx.Admin.PostAsJsonAsync($"/v1/merchants/{id}/stores", new { code = Fx.Unique("PS"), name = "Paged store" }), HttpStatusCode.Created);
        }
        return id;
    }

    [Fact]
    public async Task PagingThroughAListReturnsEveryRowOnceInOrder()
    {
        var merchant = await CreateMerchantWithStoresAsync(7);
        for (var i = 0; i < 4; i++) await Fx.CreateKeyAsync(Fx.Unique("paged till "), "pos", merchant, null);

        // Pages of 3: 3 + 3 + 1 stores; ReadAllPagesAsync also checks that only the last page is short.
        var stores = await Fx.ReadAllPagesAsync(Fx.Admin, $"/v1/merchants/{merchant}/stores", limit: 3);
        var clients = await Fx.ReadAllPagesAsync(Fx.Admin, "/v1/api-clients", limit: 3);
        var merchants = await Fx.ReadAllPagesAsync(Fx.Admin, "/v1/merchants", limit: 2);

        Assert.Equal(await Fx.QueryAsync<long>("SELECT id FROM stores WHERE merchant_id = @merchant ORDER BY id", new { merchant }),
            stores.Select(s => s.GetProperty("id").GetInt64()).ToList());
        Assert.Equal(await Fx.QueryAsync<long>("SELECT id FROM api_clients ORDER BY id"), clients.Select(c => c.GetProperty("id").GetInt64()).ToList());
        Assert.Equal(await Fx.QueryAsync<long>("SELECT id FROM merchants ORDER BY id"), merchants.Select(m => m.GetProperty("id").GetInt64()).ToList());
    }

    [Fact]
    public async Task TheDefaultPageHoldsTwentyRowsAndPointsAtTheNext()
    {
        var merchant = await CreateMerchantWithStoresAsync(21);

        var first = await ReadAsync(await Fx.Admin.GetAsync($"/v1/merchants/{merchant}/stores"), HttpStatusCode.OK);
        var cursor = first.GetProperty("nextCursor").GetString();
        var second = await ReadAsync(await Fx.Admin.GetAsync($"/v1/merchants/{merchant}/stores?cursor={Uri.EscapeDataString(cursor!)}"), HttpStatusCode.OK);

        Assert.Equal(20, first.GetProperty("items").GetArrayLength());
        Assert.Single(second.GetProperty("items").EnumerateArray());
        Assert.Equal(JsonValueKind.Null, second.GetProperty("nextCursor").ValueKind);
        Assert.Equal(await Fx.ScalarAsync<long>("SELECT MAX(id) FROM stores WHERE merchant_id = @merchant", new { merchant }),
            second.GetProperty("items")[0].GetProperty("id").GetInt64());
    }

    [Fact]
    public async Task APageSizeOutsideOneToAHundredIsRefusedOnEveryList()
    {
        foreach (var path in new[] { "/v1/merchants", $"/v1/merchants/{Fx.BrandId}/stores", "/v1/api-clients" })
        {
            foreach (var limit in new[] { 0, 101 })
            {
                await AssertProblemAsync(await Fx.Admin.GetAsync($"{path}?limit={limit}"), HttpStatusCode.BadRequest, "invalid_limit", "limit");
            }
            var largest = await ReadAsync(await Fx.Admin.GetAsync($"{path}?limit=100"), HttpStatusCode.OK);
            Assert.True(largest.GetProperty("items").GetArrayLength() is > 0 and <= 100, path);
        }
    }

    [Fact]
    public async Task ACursorFromOneListIsRefusedByAnother()
    {
        var merchant = await CreateMerchantWithStoresAsync(2);
        var stores = await ReadAsync(await Fx.Admin.GetAsync($"/v1/merchants/{merchant}/stores?limit=1"), HttpStatusCode.OK);
        var cursor = Uri.EscapeDataString(stores.GetProperty("nextCursor").GetString()!);

        await AssertProblemAsync(await Fx.Admin.GetAsync($"/v1/api-clients?cursor={cursor}"), HttpStatusCode.BadRequest, "invalid_cursor", "cursor");
        await AssertProblemAsync(await Fx.Admin.GetAsync($"/v1/merchants?cursor={cursor}"), HttpStatusCode.BadRequest, "invalid_cursor", "cursor");
        await AssertProblemAsync(await Fx.Admin.GetAsync($"/v1/merchants/{merchant}/stores?cursor=garbage"), HttpStatusCode.BadRequest, "invalid_cursor", "cursor");
        Assert.Equal(HttpStatusCode.OK, (await Fx.Admin.GetAsync($"/v1/merchants/{merchant}/stores?cursor={cursor}")).StatusCode);
    }
}

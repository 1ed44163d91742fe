using System.Net;
using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using LoyaltyApi.Tests.Infrastructure;
using Xunit;

namespace LoyaltyApi.Tests.Api;

public abstract class SecurityTests(ApiFixture fx) : ApiTests(fx)
{
    [Theory]
    [InlineData("GET", "/v1/program")]
    [InlineData("PUT", "/v1/program")]
    [InlineData("POST", "/v1/merchants")]
    [InlineData("POST", "/v1/api-clients")]
    [InlineData("POST", "/v1/members")]
    [InlineData("GET", "/v1/members/1")]
    [InlineData("GET", "/v1/cards/123456")]
    [InlineData("POST", "/v1/purchases")]
    [InlineData("POST", "/v1/purchases/quote")]
    [InlineData("POST", "/v1/purchases/1/refunds")]
    [InlineData("GET", "/v1/members/1/balance")]
    [InlineData("GET", "/v1/members/1/transactions")]
    [InlineData("GET", "/v1/me")]
    [InlineData("POST", "/v1/admin/points-lifecycle/runs")]
    [InlineData("POST", "/v1/admin/idempotency-purges")]
    public async Task EveryEndpointRefusesACallerWithoutCredentials(string method, string path)
    {
        var r = await Fx.Anonymous.SendAsync(new HttpRequestMessage(new HttpMethod(method), path) { Content = JsonContent.Create(new { }) });

        Assert.Equal(HttpStatusCode.Unauthorized, r.StatusCode);
        Assert.Equal("application/problem+json", r.Content.Headers.ContentType?.MediaType);
    }

    [Theory]
    [InlineData("PUT", "/v1/program")]
    [InlineData("POST", "/v1/merchants")]
    [InlineData("POST", "/v1/api-clients")]
    [InlineData("GET", "/v1/members/1/transactions")]
    [InlineData("POST", "/v1/members/1/adjustments")]
    [InlineData("POST", "/v1/admin/points-lifecycle/runs")]
    [InlineData("POST", "/v1/admin/idempotency-purges")]
    public async Task APosKeyCannotUseAdminEndpoints(string method, string path)
    {
        var r = await Fx.BrandPos.SendAsync(new HttpRequestMessage(new HttpMethod(method), path) { Content = JsonContent.Create(new { }) });

        Assert.Equal(HttpStatusCode.Forbidden, r.StatusCode);
        Assert.Equal("application/problem+json", r.Content.Headers.ContentType?.MediaType);
    }

    [Fact]
    public async Task AFinanceKeyCannotRecordPurchases()
    {
        var finance = Fx.Client(await Fx.CreateKeyAsync("finance", "finance", null, null));
        var (_, card) = await Fx.EnrollAsync();

        var r = await finance.PostAsJsonAsync("/v1/purchases", Fx.PurchaseBody(card, 5.00m));

        Assert.Equal(HttpStatusCode.Forbidden, r.StatusCode);
    }

    [Fact]
    public async Task AMemberTokenSeesOnlyItsOwnMember()
    {
        var (alice, _) = await Fx.EnrollAsync();
        var (bob, _) = await Fx.EnrollAsync();
        await Fx.AdjustAsync(bob, 999);
        var app = Fx.MemberClient(alice);

        var me = await ReadAsync(await app.GetAsync("/v1/me"), HttpStatusCode.OK);
        var bobsBalance = await app.GetAsync($"/v1/members/{bob}/balance");
        var bobsHistory = await app.GetAsync($"/v1/members/{bob}/transactions");

        Assert.Equal(alice, me.GetProperty("member").GetProperty("id").GetInt64());
        Assert.Equal(0, me.GetProperty("balance").GetProperty("available").GetInt64());
        Assert.Equal(HttpStatusCode.Unauthorized, bobsBalance.StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, bobsHistory.StatusCode);
    }

    [Fact]
    public async Task ATokenSignedWithAnotherKeyIsRefused()
    {
        var (member, _) = await Fx.EnrollAsync();
        var forged = Fx.MemberClient(member, signingKey: "an-attacker-key-that-is-long-enough-0123456789");

        var r = await forged.GetAsync("/v1/me");

        Assert.Equal(HttpStatusCode.Unauthorized, r.StatusCode);
    }

    [Fact]
    public async Task APosKeySeesOnlyItsOwnMerchant()
    {
        var list = await ReadAsync(await Fx.PartnerPos.GetAsync("/v1/merchants"), HttpStatusCode.OK);
        var brand = await Fx.PartnerPos.GetAsync($"/v1/merchants/{Fx.BrandId}");
        var brandStores = await Fx.PartnerPos.GetAsync($"/v1/merchants/{Fx.BrandId}/stores");

        Assert.Equal([Fx.PartnerId], list.GetProperty("items").EnumerateArray().Select(m => m.GetProperty("id").GetInt64()).ToArray());
        Assert.Equal(JsonValueKind.Null, list.GetProperty("nextCursor").ValueKind);
        await AssertProblemAsync(brand, HttpStatusCode.NotFound, "not_found", "id");
        await AssertProblemAsync(brandStores, HttpStatusCode.NotFound, "not_found", "id");
    }

    [Fact]
    public async Task ApiKeysAreShownOnceAndStoredOnlyAsAHash()
    {
        var created = await ReadAsync(await Fx.Admin.PostAsJsonAsync("/v1/api-clients", new { name = "till 9", role = "pos", merchantId = Fx.BrandId }), HttpStatusCode.Created);
        var key = created.GetProperty("apiKey").GetString()!;
        var id = created.GetProperty("id").GetInt64();

        var stored = await Fx.ScalarAsync<string>("SELECT key_hash FROM api_clients WHERE id = @id", new { id });
        var clients = await Fx.ReadAllPagesAsync(Fx.Admin, "/v1/api-clients");
        var listed = string.Join("\n", clients.Select(c => c.GetRawText()));

        Assert.NotEqual(key, stored);
        Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(key))), stored);
        Assert.Contains(clients, c => c.GetProperty("id").GetInt64() == id);
        Assert.DoesNotContain(key, listed);
        Assert.DoesNotContain(stored, listed);
        Assert.Equal(HttpStatusCode.OK, (await Fx.Client(key).GetAsync("/v1/program")).StatusCode);
    }

    [Fact]
    public async Task ARevokedKeyStopsWorking()
    {
        var created = await ReadAsync(await Fx.Admin.PostAsJsonAsync("/v1/api-clients", new { name = "old till", role = "pos", merchantId = Fx.BrandId }), HttpStatusCode.Created);
        var client = Fx.Client(created.GetProperty("apiKey").GetString()!);
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/v1/program")).StatusCode);

        await Fx.Admin.PostAsync($"/v1/api-clients/{created.GetProperty("id").GetInt64()}/revoke", null);

        Assert.Equal(HttpStatusCode.Unauthorized, (await client.GetAsync("/v1/program")).StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await Fx.Client("lk_000000000000_guess").GetAsync("/v1/program")).StatusCode);
    }

    [Fact]
    public async Task APosKeyMustNameAMerchantAndAStoreOfIt()
    {
        var noMerchant = await Fx.Admin.PostAsJsonAsync("/v1/api-clients", new { name = "x", role = "pos" });
        var foreignStore = await Fx.Admin.PostAsJsonAsync("/v1/api-clients", new { name = "x", role = "pos", merchantId = Fx.BrandId, storeId = Fx.PartnerStoreId });
        var badRole = await Fx.Admin.PostAsJsonAsync("/v1/api-clients", new { name = "x", role = "root" });
        var longName = await Fx.Admin.PostAsJsonAsync("/v1/api-clients", new { name = new string('n', 101), role = "pos", merchantId = Fx.BrandId });

        await AssertProblemAsync(noMerchant, HttpStatusCode.BadRequest, "validation", "merchantId");
        await AssertProblemAsync(foreignStore, HttpStatusCode.UnprocessableEntity, "unknown_store", "storeId");
        await AssertProblemAsync(badRole, HttpStatusCode.BadRequest, "validation", "role");
        await AssertProblemAsync(longName, HttpStatusCode.BadRequest, "validation", "name");
    }

    [Fact]
    public async Task LogsCarryNoKeysPhoneNumbersOrEmails()
    {
        var phone = Fx.UniquePhone();
        var email = $"{Fx.Unique("private")}@example.org";
        var member = await ReadAsync(await Fx.BrandPos.PostAsJsonAsync("/v1/members", new { phone, email, cardNumber = Fx.Unique("C7") }), HttpStatusCode.Created);
        await Fx.BrandPos.GetAsync($"/v1/members?phone={Uri.EscapeDataString(phone)}");
        await Fx.BrandPos.GetAsync($"/v1/members?email={Uri.EscapeDataString(email)}");
        await Fx.Client("lk_abcdefabcdef_wrongsecret").GetAsync("/v1/program");
        await Fx.Anonymous.SendAsync(new HttpRequestMessage(HttpMethod.Get, "/v1/me") { Headers = { { "Authorization", "Bearer not.a.jwt" } } });
        Assert.True(member.GetProperty("id").GetInt64() > 0);

        var logs = string.Join("\n", Fx.Logs.Lines);

        Assert.NotEmpty(Fx.Logs.Lines);
        foreach (var secret in new[] { ApiFixture.AdminKey, Fx.BrandPosKey, "wrongsecret", phone, phone[1..], email, "not.a.jwt" })
        {
            Assert.DoesNotContain(secret, logs, StringComparison.OrdinalIgnoreCase);
        }
    }
}

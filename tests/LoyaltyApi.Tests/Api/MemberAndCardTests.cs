using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using LoyaltyApi.Tests.Infrastructure;
using Xunit;

namespace LoyaltyApi.Tests.Api;

public abstract class MemberAndCardTests(ApiFixture fx) : ApiTests(fx)
{
    [Fact]
    public async Task EnrollingNormalisesPhoneAndEmailAndFindsTheMemberByEither()
    {
        var digits = Fx.UniquePhone()[1..];
        var email = $"{Fx.Unique("Ann.")}@Example.COM";
        var external = Fx.Unique("crm-");

        var created = await ReadAsync(await Fx.BrandPos.PostAsJsonAsync("/v1/members", new
        {
            externalId = external, phone = $"+{digits[..2]} ({digits[2..5]}) {digits[5..]}", email = $"  {email} ",
            name = "Ann", birthDate = "1990-05-17",
        }), HttpStatusCode.Created);

        Assert.Equal("+" + digits, created.GetProperty("phone").GetString());
        Assert.Equal(email.ToLowerInvariant(), created.GetProperty("email").GetString());
        Assert.Equal("1990-05-17", created.GetProperty("birthDate").GetString());
        Assert.Equal(8, created.GetProperty("referralCode").GetString()!.Length);
        var id = created.GetProperty("id").GetInt64();
        foreach (var query in new[] { $"phone=%2B{digits}", $"email={Uri.EscapeDataString(email.ToUpperInvariant())}", $"externalId={external}" })
        {
            var found = await ReadAsync(await Fx.BrandPos.GetAsync($"/v1/members?{query}"), HttpStatusCode.OK);
            Assert.Equal(id, found[0].GetProperty("id").GetInt64());
        }
        Assert.Equal(0, (await ReadAsync(await Fx.BrandPos.GetAsync("/v1/members?phone=%2B99999999999"), HttpStatusCode.OK)).GetArrayLength());
        await AssertProblemAsync(await Fx.BrandPos.GetAsync("/v1/members"), HttpStatusCode.BadRequest, "one_filter_required");
    }

    [Fact]
    public async Task EnrollingAPhoneOrEmailTwiceIsAConflictNamingTheField()
    {
        var phone = Fx.UniquePhone();
        var email = $"{Fx.Unique("dup")}@example.com";
        await ReadAsync(await Fx.Admin.PostAsJsonAsync("/v1/members", new { phone, email }), HttpStatusCode.Created);

        var samePhone = await Fx.Admin.PostAsJsonAsync("/v1/members", new { phone = phone.Replace("+49", "+49 ") });
        var sameEmail = await Fx.Admin.PostAsJsonAsync("/v1/members", new { email = email.ToUpperInvariant() });
        var badPhone = await Fx.Admin.PostAsJsonAsync("/v1/members", new { phone = "12" });
        var nothing = await Fx.Admin.PostAsJsonAsync("/v1/members", new { name = "No Contact" });

        await AssertProblemAsync(samePhone, HttpStatusCode.Conflict, "member_exists", "phone");
        await AssertProblemAsync(sameEmail, HttpStatusCode.Conflict, "member_exists", "email");
        await AssertProblemAsync(badPhone, HttpStatusCode.BadRequest, "validation", "phone");
        await AssertProblemAsync(nothing, HttpStatusCode.BadRequest, "validation", "phone");
        Assert.Equal(1, await Fx.ScalarAsync<long>("SELECT COUNT(*) FROM members WHERE phone = @phone OR email = @email", new { phone, email }));
    }

    [Fact]
    public async Task AReferralCodeLinksTheNewMemberToTheReferrer()
    {
        var referrer = await ReadAsync(await Fx.Admin.PostAsJsonAsync("/v1/members", new { phone = Fx.UniquePhone() }), HttpStatusCode.Created);
        var code = referrer.GetProperty("referralCode").GetString();

        var referred = await ReadAsync(await Fx.Admin.PostAsJsonAsync("/v1/members", new { phone = Fx.UniquePhone(), referralCode = code }), HttpStatusCode.Created);
        var unknown = await Fx.Admin.PostAsJsonAsync("/v1/members", new { phone = Fx.UniquePhone(), referralCode = "NOSUCH22" });

        Assert.Equal(referrer.GetProperty("id").GetInt64(), referred.GetProperty("referredByMemberId").GetInt64());
        await AssertProblemAsync(unknown, HttpStatusCode.UnprocessableEntity, "unknown_referral_code", "referralCode");
    }

    [Fact]
    public async Task AWelcomeBonusIsGrantedOnEnrollment()
    {
        var program = JsonSerializer.SerializeToElement(ApiFixture.DefaultProgram);
        var withBonus = JsonSerializer.Deserialize<Dictionary<string, object>>(program.GetRawText())!;
        withBonus["welcomeBonusPoints"] = 150;
        (await Fx.Admin.PutAsJsonAsync("/v1/program", withBonus)).EnsureSuccessStatusCode();
        try
        {
            var (member, _) = await Fx.EnrollAsync();
            var balance = await Fx.BalanceAsync(member);
            Assert.Equal(150, balance.GetProperty("available").GetInt64());
            Assert.Equal(150, balance.GetProperty("lifetime").GetProperty("earned").GetInt64());
        }
        finally
        {
            (await Fx.Admin.PutAsJsonAsync("/v1/program", ApiFixture.DefaultProgram)).EnsureSuccessStatusCode();
        }
    }

    [Fact]
    public async Task ThePosLooksACardUpWithItsBalance()
    {
        var (member, card) = await Fx.EnrollAsync();
        await Fx.AdjustAsync(member, 75);

        var lookup = await ReadAsync(await Fx.BrandStorePos.GetAsync($"/v1/cards/{card}"), HttpStatusCode.OK);

        Assert.Equal(member, lookup.GetProperty("memberId").GetInt64());
        Assert.Equal("active", lookup.GetProperty("status").GetString());
        Assert.Equal(75, lookup.GetProperty("balance").GetProperty("available").GetInt64());
        await AssertProblemAsync(await Fx.BrandPos.GetAsync("/v1/cards/UNKNOWN999"), HttpStatusCode.NotFound, "not_found", "cardNumber");
    }

    [Fact]
    public async Task ALostCardIsReplacedAndTheBalanceStaysWithTheMember()
    {
        var (member, card) = await Fx.EnrollAsync();
        await Fx.AdjustAsync(member, 300);
        await ReadAsync(await Fx.BrandPos.PostAsJsonAsync($"/v1/cards/{card}/block", new { reason = "lost" }), HttpStatusCode.OK);

        var replacement = await ReadAsync(await Fx.BrandPos.PostAsJsonAsync($"/v1/cards/{card}/replace", new { }), HttpStatusCode.Created);
        var newCard = replacement.GetProperty("cardNumber").GetString()!;

        Assert.Equal(16, newCard.Length);
        Assert.Equal(member, replacement.GetProperty("memberId").GetInt64());
        var old = await ReadAsync(await Fx.BrandPos.GetAsync($"/v1/cards/{card}"), HttpStatusCode.OK);
        Assert.Equal("replaced", old.GetProperty("status").GetString());
        var purchase = await ReadAsync(await Fx.BrandPos.PostAsJsonAsync("/v1/purchases", Fx.PurchaseBody(newCard, 10.00m, redeem: 300)), HttpStatusCode.Created);
        Assert.Equal(0, purchase.GetProperty("balance").GetProperty("available").GetInt64());
        await AssertProblemAsync(await Fx.BrandPos.PostAsJsonAsync($"/v1/cards/{card}/replace", new { }), HttpStatusCode.Conflict, "card_already_replaced");
        await AssertProblemAsync(await Fx.BrandPos.PostAsJsonAsync("/v1/purchases", Fx.PurchaseBody(card, 10.00m)), HttpStatusCode.UnprocessableEntity, "card_blocked", "cardNumber");
    }

    [Fact]
    public async Task ACardNumberCanBeIssuedOnlyOnce()
    {
        var (member, card) = await Fx.EnrollAsync();

        var again = await Fx.Admin.PostAsJsonAsync($"/v1/members/{member}/cards", new { cardNumber = card });
        var noMember = await Fx.Admin.PostAsJsonAsync("/v1/members/999999999/cards", new { });

        await AssertProblemAsync(again, HttpStatusCode.Conflict, "card_number_taken", "cardNumber");
        await AssertProblemAsync(noMember, HttpStatusCode.NotFound, "not_found", "id");
    }

    [Fact]
    public async Task AMemberSeesTheirOwnBalanceAndHistoryNewestFirstInPages()
    {
        var (member, card) = await Fx.EnrollAsync();
        for (var i = 1; i <= 5; i++) await Fx.AdjustAsync(member, i * 10);
        var app = Fx.MemberClient(member);

        var me = await ReadAsync(await app.GetAsync("/v1/me"), HttpStatusCode.OK);
        var page1 = await ReadAsync(await app.GetAsync("/v1/me/transactions?limit=2"), HttpStatusCode.OK);
        var cursor = page1.GetProperty("nextCursor").GetString();
        var page2 = await ReadAsync(await app.GetAsync($"/v1/me/transactions?limit=2&cursor={Uri.EscapeDataString(cursor!)}"), HttpStatusCode.OK);
        var page3 = await ReadAsync(await app.GetAsync($"/v1/me/transactions?limit=2&cursor={Uri.EscapeDataString(page2.GetProperty("nextCursor").GetString()!)}"), HttpStatusCode.OK);

        Assert.Equal(member, me.GetProperty("member").GetProperty("id").GetInt64());
        Assert.Equal(150, me.GetProperty("balance").GetProperty("available").GetInt64());
        Assert.Equal([50L, 40L], page1.GetProperty("items").EnumerateArray().Select(e => e.GetProperty("points").GetInt64()).ToArray());
        Assert.Equal([30L, 20L], page2.GetProperty("items").EnumerateArray().Select(e => e.GetProperty("points").GetInt64()).ToArray());
        Assert.Equal([10L], page3.GetProperty("items").EnumerateArray().Select(e => e.GetProperty("points").GetInt64()).ToArray());
        Assert.Equal(JsonValueKind.Null, page3.GetProperty("nextCursor").ValueKind);
        Assert.Equal(JsonValueKind.Null, page1.GetProperty("items")[0].GetProperty("actor").ValueKind);
        await AssertProblemAsync(await app.GetAsync("/v1/me/transactions?limit=101"), HttpStatusCode.BadRequest, "invalid_limit", "limit");
        await AssertProblemAsync(await app.GetAsync("/v1/me/transactions?cursor=garbage"), HttpStatusCode.BadRequest, "invalid_cursor", "cursor");
        Assert.NotNull(card);
    }
}

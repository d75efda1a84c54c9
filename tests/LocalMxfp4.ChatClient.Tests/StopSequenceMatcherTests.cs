using LocalMxfp4.ChatClient.Generation;

namespace LocalMxfp4.ChatClient.Tests;

public class StopSequenceMatcherTests
{
    [Fact]
    public void HoldsBackAPossibleStartAndDropsTheStopAcrossPieces()
    {
        var m = new StopSequenceMatcher(["END"]);
        Assert.Equal("The ", m.Push("The E"));
        Assert.Equal(string.Empty, m.Push("N"));
        Assert.Equal(string.Empty, m.Push("D of it"));
        Assert.Equal("END", m.Matched);
        Assert.Equal(string.Empty, m.Flush());
    }

    [Fact]
    public void ReleasesHeldTextThatDoesNotCompleteAStop()
    {
        var m = new StopSequenceMatcher(["END", "\n\n"]);
        Assert.Equal("a", m.Push("aE"));
        Assert.Equal("EN", m.Push("NX")[..2]);
        Assert.Null(m.Matched);
        Assert.Equal("b", m.Push("b\n"));
        Assert.Equal("\n", m.Flush());
    }

    [Fact]
    public void TheEarliestStopWins()
    {
        var m = new StopSequenceMatcher(["xyz", "b"]);
        Assert.Equal("a", m.Push("abxyz"));
        Assert.Equal("b", m.Matched);
    }
}

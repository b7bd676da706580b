import pytest

from robustode.errors import DuplicateNameError, RobustodeError, UnknownNameError
from robustode.registry import Registry


@pytest.fixture
def reg():
    reg = Registry("model")

    @reg.register("wrn34_10")
    def wrn34_10(num_classes=10):
        """Wide ResNet 34-10."""
        return ("wrn34_10", num_classes)

    reg.add("wrn16_1", lambda num_classes=10: ("wrn16_1", num_classes))
    reg.add("resnet20", lambda: "resnet20")
    reg.add("pgd-K", lambda steps, alpha=2: ("pgd", steps, alpha), pattern=r"pgd-(?P<steps>\d+)")
    reg.add("yopo-M-N", lambda m, n: ("yopo", m, n), pattern=r"yopo-(?P<m>\d+)-(?P<n>\d+)")
    reg.add("imagefolder:", lambda path, **kw: ("folder", path, kw))
    return reg


def test_plain_name_builds_with_keyword_arguments(reg):
    assert reg.get("wrn34_10") == ("wrn34_10", 10)
    assert reg.get("wrn34_10", num_classes=100) == ("wrn34_10", 100)


def test_duplicate_name_raises(reg):
    with pytest.raises(DuplicateNameError, match="wrn34_10"):
        reg.add("wrn34_10", lambda: None)
    with pytest.raises(DuplicateNameError):
        reg.register("resnet20")(lambda: None)


def test_unknown_name_lists_close_matches(reg):
    with pytest.raises(UnknownNameError) as info:
        reg.get("wrn34_1")
    message = str(info.value)
    assert "unknown model 'wrn34_1'" in message
    assert "did you mean" in message and "wrn34_10" in message
    assert "\n" not in message
    assert isinstance(info.value, RobustodeError)


def test_a_family_name_itself_asks_for_its_numbers(reg):
    with pytest.raises(UnknownNameError) as info:
        reg.get("yopo-M-N")
    assert str(info.value) == "model 'yopo-M-N' names a family, not one model: put numbers for its capitals"
    reg.add("wrnD_K", lambda depth, widen_factor: ("wrn", depth, widen_factor),
            pattern=r"wrn(?P<depth>\d+)_(?P<widen_factor>\d+)")
    with pytest.raises(UnknownNameError, match=r"'wrnD_K' names a family.*\(e\.g\. wrn16_1, wrn34_10\)$"):
        reg.get("wrnD_K")
    assert reg.get("wrn28_10") == ("wrn", 28, 10)


def test_unknown_in_empty_registry_says_so():
    with pytest.raises(UnknownNameError, match="no things are registered"):
        Registry("thing").get("anything")


@pytest.mark.parametrize("bad", ["", None, 3])
def test_name_must_be_a_non_empty_string(reg, bad):
    with pytest.raises(UnknownNameError, match="non-empty string"):
        reg.get(bad)


def test_glob_listing_is_sorted(reg):
    assert reg.names("wrn*") == ["wrn16_1", "wrn34_10"]
    assert reg.names() == sorted(["wrn34_10", "wrn16_1", "resnet20", "pgd-K", "yopo-M-N", "imagefolder:"])
    assert reg.names("nothing*") == []
    assert [e.name for e in reg.entries("wrn*")] == ["wrn16_1", "wrn34_10"]
    assert reg.entries("wrn34*")[0].summary == "Wide ResNet 34-10."
    assert list(reg) == reg.names() and len(reg) == 6


def test_family_pattern_passes_integers(reg):
    assert reg.get("pgd-10") == ("pgd", 10, 2)
    assert reg.get("yopo-5-3") == ("yopo", 5, 3)
    assert reg.resolve("pgd-7")[1] == {"steps": 7}
    assert "pgd-20" in reg and "pgd-" not in reg and "pgd-x" not in reg


def test_overrides_win_over_values_parsed_from_the_name(reg):
    assert reg.get("pgd-10", steps=3, alpha=1) == ("pgd", 3, 1)


def test_prefix_entry_passes_the_rest_as_positional(reg):
    assert reg.get("imagefolder:/data/x.tar.gz") == ("folder", "/data/x.tar.gz", {})
    assert reg.get("imagefolder:a:b", size=8) == ("folder", "a:b", {"size": 8})
    with pytest.raises(UnknownNameError):
        reg.get("imagefolder:")  # a prefix alone names nothing


def test_family_suggestions_share_the_head(reg):
    with pytest.raises(UnknownNameError, match="pgd-K"):
        reg.get("pgd-ten")


def test_remove_and_lookup(reg):
    assert reg.lookup("pgd-4") is reg.lookup("pgd-5")
    reg.remove("resnet20")
    assert "resnet20" not in reg


def test_dataset_registry_lists_every_data_set():
    from robustode.data import datasets

    assert set(datasets.names()) >= {"cifar10", "cifar100", "svhn", "cifar10-jpeg", "imagefolder:", "synthetic"}
    assert "imagefolder:/anywhere" in datasets
    assert all(entry.summary for entry in datasets.entries())

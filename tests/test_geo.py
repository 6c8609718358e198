import numpy as np
import pytest

from core.geo import (
    MixedUTMZoneError,
    UTMZone,
    distances_m,
    latlon_to_utm,
    single_zone,
    utm_to_latlon,
)


def test_real_sf_xl_example_projects_to_its_utm():
    east, north, zone = latlon_to_utm([37.77510], [-122.51130])
    assert zone == UTMZone(10, "S")
    # the file name says 0543037.38 / 4180974.80 (rounded to cm from the same lat/lon)
    assert abs(east[0] - 543037.38) < 0.05 and abs(north[0] - 4180974.80) < 0.05


def test_round_trip_for_arrays():
    rng = np.random.default_rng(0)
    lat = rng.uniform(37.70, 37.81, 1000)
    lon = rng.uniform(-122.51, -122.36, 1000)
    east, north, zone = latlon_to_utm(lat, lon)
    back_lat, back_lon = utm_to_latlon(east, north, zone)
    np.testing.assert_allclose(back_lat, lat, atol=1e-8)
    np.testing.assert_allclose(back_lon, lon, atol=1e-8)


def test_mixed_zones_are_an_error_not_a_wrong_easting():
    with pytest.raises(MixedUTMZoneError, match="several UTM zones"):
        latlon_to_utm([37.7, 37.7], [-122.5, -116.0])  # zones 10 and 11
    with pytest.raises(MixedUTMZoneError):
        latlon_to_utm([1.0, -1.0], [-122.5, -122.5])  # two hemispheres


def test_forced_zone_projects_everything_into_it():
    east, _, zone = latlon_to_utm([37.7, 37.7], [-122.5, -116.0], force_zone=UTMZone(10, "S"))
    assert zone.number == 10 and east[1] > 1_000_000  # far outside zone 10, but consistent


def test_single_zone_of_name_zones():
    assert single_zone([(10, "S"), (10, "S")]) == UTMZone(10, "S")
    with pytest.raises(MixedUTMZoneError, match="mixes UTM zones"):
        single_zone([(10, "S"), (11, "S")])


def test_distances_in_metres():
    assert distances_m(0.0, 0.0, 3.0, 4.0) == pytest.approx(5.0)
    a = latlon_to_utm([37.7751, 37.7751], [-122.5113, -122.5113 + 0.001])
    # 0.001 deg of longitude at 37.78 N is about 88 m
    assert distances_m(a[0][0], a[1][0], a[0][1], a[1][1]) == pytest.approx(88.0, abs=1.0)


def test_nan_coordinates_are_rejected():
    with pytest.raises(ValueError, match="NaN"):
        latlon_to_utm([np.nan], [-122.5])


def test_latitudes_outside_utm_are_a_user_error_with_the_range():
    from core.errors import UserError
    from core.geo import OutsideUTMError

    for lat in (85.0, -81.0):
        with pytest.raises(OutsideUTMError, match=r"outside UTM's range \(-80 to 84 degrees\)"):
            latlon_to_utm([37.7, lat], [-122.4, -122.4], force_zone=UTMZone(10, "S"))
    assert issubclass(OutsideUTMError, UserError)

"""Altavia Logistics company handbook (RAG fallback corpus), hand-written.

hr-policies.md, it-guide.md and finance-expenses.md restate the adapter facts
(make_data.py checks that every fact key appears in its department's file).
The other files cover topics no adapter knows; RETRIEVAL_PROBES lists
questions whose answer is in exactly one file, with a key string to check.
"""

HANDBOOK = {}

HANDBOOK["hr-policies.md"] = """\
# HR Policies

This chapter summarises the most important HR rules at Altavia Logistics. The
binding text is your employment contract and the works agreements; if in
doubt, ask your HR business partner or open a request in Harbor.

## Harbor, the HR portal

Harbor is our HR self-service portal. Leave requests, sick days, personal
data changes (home address, phone number, emergency contacts), training
bookings and bike leasing sign-ups all go through Harbor.
You log in with your normal Altavia account. Payslips are not in Harbor; they
are published by Finance in Paystream.

## Working time

- A full-time week is 38.5 hours.
- We work flexitime. Core hours are 10:00 to 15:00, when everyone should be
  available unless they are on leave.
- Overtime is recorded in Harbor and compensated as time off, not paid out.
  Your flexitime account can hold up to 40 hours; anything above that needs
  your manager's written agreement.

## Remote work

You can work remotely up to 2 days a week, agreed with your manager.
Wednesday is team day: everyone works from their office on Wednesday. Working
from another country needs HR approval in advance.

## Vacation

- Every full-time employee has 27 vacation days per year, on top of public
  holidays. Part-time colleagues get a pro rata share.
- Request leave in Harbor at least two weeks in advance for periods longer
  than three days. Half days are possible.
- Up to 5 unused vacation days can be carried over into the next year. They
  must be taken by 31 March, otherwise they expire.

## Sickness

If you are ill, tell your manager before 09:00 on your first sick day and
record the absence in Harbor. A doctor's note is required if you are off sick
for more than 3 days.

## Parental leave and family

Every new parent, including adoptive parents and regardless of gender, can
take 20 weeks of parental leave at full pay. Please let HR know at least
8 weeks before your leave starts. After parental leave you may request
part-time work; HR will discuss the options with you and your manager.

## Probation and notice

- The probation period is 4 months for all new employees. Your manager holds
  a probation review in the last month.
- The standard notice period is 6 weeks to the end of a calendar quarter,
  unless your contract says otherwise. Resignations must be submitted in
  writing to HR.

## Sabbatical

After 5 years of service you can take an unpaid sabbatical of up to 3 months.
Apply in Harbor at least six months before the planned start; your manager
and HR agree the dates with you.

## Learning and development

Each employee has a personal learning budget of 950 EUR per year for courses,
conferences and certifications. Book training through Harbor. Unused budget
does not carry over to the next year.

## Onboarding

New hires start with Welcome Day, which takes place on the first Monday of
every month at headquarters in Brennsby. Every newcomer is paired with an
onboarding buddy from their team for the first three months.

## Benefits and wellbeing

- **Bike leasing:** through our partner VeloFleet you can lease up to 2 bikes,
  e-bikes included. Sign up in Harbor.
- **Compass Care:** our Employee Assistance Programme offers free,
  confidential counselling 24/7 for you and your family members. Your manager
  is never informed that you used it.
"""

HANDBOOK["it-guide.md"] = """\
# IT Guide

This guide explains the IT basics every Altavia employee needs. For anything
not covered here, contact the IT helpdesk.

## Getting help

- **Phone:** call the IT helpdesk on extension 4357, Monday to Friday from
  07:00 to 19:00.
- **Tickets:** raise requests and incidents in Beacon, our IT ticket portal.
  You get a confirmation email with your ticket number and can track progress
  in Beacon.
- **In person:** the IT service point "Pitstop" is in Building C, room C.014,
  at the Brennsby headquarters.

## Your equipment

- The standard laptop is the Lenovo T14 Gen 5, delivered with a docking
  station for your office desk. Laptops are replaced every 4 years; IT
  contacts you when yours is due.
- The standard company phone is the Samsung Galaxy A55. Request one in Beacon;
  your manager has to approve it.

## Accounts, passwords and sign-in

- Passwords must be at least 14 characters long and are changed every
  90 days. Harbor, Ledgerly and every other internal system use the same
  Altavia account.
- After 5 failed login attempts your account is locked. It unlocks
  automatically after 15 minutes, or the helpdesk can unlock it sooner.
- Multi-factor authentication uses the Altavia Verify app on your phone.
  Register it on your first day. If you change or lose your phone, call the
  helpdesk to reset your registration.

## Network and remote access

- In the offices, connect work devices to the ALT-Staff Wi-Fi with your
  Altavia account. Visitors use ALT-Guest with the daily code from reception.
- Outside the office, connect with FjordLink, our VPN client. It is
  preinstalled on every Altavia laptop.

## Software

Approved software can be installed without admin rights from Toolshed, the
self-service catalogue on your laptop. Software that is not in Toolshed has to
be requested in Beacon.

## Files and email

Every employee has 100 GB of personal cloud storage, backed up every night.
Team files belong in the shared team drives, not in personal storage.

## Printing

All printers use the follow-me queue ALT-PRINT. Print to ALT-PRINT as usual,
then tap your badge on any office printer to release the job. Unreleased jobs
are deleted after 24 hours.

## Security

- Report suspicious emails with the Tripwire button in Outlook. Do not click
  links or open attachments in a suspicious email. If you already clicked,
  call the helpdesk immediately.
- Lock your screen whenever you leave your desk.

## Updates and maintenance

Updates are installed in the weekly maintenance window, every Thursday from
18:00 to 20:00. Leave your laptop switched on, plugged in and connected on
Thursday evening; it may restart during the window.
"""

HANDBOOK["finance-expenses.md"] = """\
# Finance: Expenses, Invoices and Payroll

This chapter covers travel expenses, supplier invoices and payroll dates.
Questions go to the Finance team at finance@altavia-logistics.example.

## Expense claims

- Submit all expense claims in Ledgerly, our expense tool. You can photograph
  receipts with your phone and upload them directly.
- Claims must be submitted within 30 days of the expense. Later claims need
  an exception approved by Finance.
- A receipt is required for every expense above 15 EUR. A photo uploaded to
  Ledgerly is enough; you do not need to keep paper originals.
- Approved claims are reimbursed with the next salary payment.

## Travel costs

- **Meals:** the meal allowance is 38 EUR per full travel day and 19 EUR on
  arrival and departure days.
- **Hotels:** up to 140 EUR per night, or up to 190 EUR per night in capital
  cities.
- **Private car:** business trips in your own car are reimbursed at 0.32 EUR
  per kilometre.
- **Travel advance:** you can request an advance of up to 500 EUR at least
  10 days before your trip. Unused amounts are settled with your expense
  claim.
- **Corporate card:** frequent travellers can get an Altavia corporate card
  with a monthly limit of 3,000 EUR. Request one from Finance.

## Supplier invoices

- Suppliers send invoices as PDF to ap@altavia-logistics.example, the
  accounts payable mailbox. If an invoice reaches you directly, forward it
  there.
- Budget owners approve invoices up to 5,000 EUR. Invoices above 5,000 EUR
  also need approval from the CFO, Jonas Ekdahl.
- Our standard payment term is 45 days from receipt of the invoice.

## Cost centres

Cost centres have the format CC- followed by four digits. Brennsby operations
book on cost centre CC-4120. Ask your manager for the cost centre of your
team if you are unsure.

## Payroll

- Salaries are paid on the 25th of each month. If the 25th is a weekend or a
  public holiday, the payment arrives on the working day before.
- Payslips are published in Paystream on the 22nd of each month. Older
  payslips and annual salary statements are also available there.
- Changes to bank details or tax information take effect in the next payroll
  run if they reach Finance by the 10th of the month.

## Fiscal year and budgets

Altavia's fiscal year runs from 1 July to 30 June. Department budgets for the
next fiscal year are submitted to Finance by 15 April.
"""

HANDBOOK["facilities-and-offices.md"] = """\
# Facilities and Offices

Altavia Logistics operates from three sites. This chapter lists addresses,
opening times, parking and the services available at each site.

## Our sites

| Site | Address | What is there |
| --- | --- | --- |
| Brennsby headquarters | Quayside 14, 48217 Brennsby | Management, HR, IT, Finance, sales, customer service |
| Tolvik hub | Ringvej 3, 48390 Tolvik | Main cross-dock warehouse with 64 loading docks |
| Marrow Bay port office | Pier Road 7, 51104 Marrow Bay | Sea freight and customs team |

## Brennsby headquarters

The Brennsby campus has three buildings:

- **Building A:** offices and the main reception, staffed Monday to Friday
  from 07:00 to 18:00. Visitors always register here first.
- **Building B:** the canteen, the training centre and Lighthouse Hall, our
  large event room with seats for 120 people.
- **Building C:** the IT service point, the archive and the mail room.

With your badge the buildings are open from 06:00 to 22:00 on working days.
At weekends, access is only possible after registering with the security desk
at gate A.

### Canteen

The Brennsby canteen in Building B opens from 07:30 to 14:30. Breakfast is
served until 10:00 and hot lunch from 11:30 to 14:00. There is always one
vegetarian and one vegan main dish. The weekly menu is posted on the intranet
every Monday morning. Dogs are not allowed in the canteen.

### Parking and getting there

- Staff park in car park P2 behind Building C, which has 160 spaces and
  12 charging points for electric cars. Charging is free for up to 4 hours.
- Visitors park in car park P1 at the main entrance on Quayside.
- Trucks and deliveries use gate D only, from Dockside Ring.
- A covered bike shelter with 80 spaces is next to Building A; showers and
  lockers are in the basement of Building B.
- Bus line 14 stops at "Quayside Campus", a two-minute walk from gate A.

## Tolvik hub

The Tolvik hub runs in three shifts, 24 hours a day from Monday 05:00 to
Saturday 22:00. The small canteen is open from 05:30 to 13:00 for the early
and day shifts; vending machines with hot meals are available around the
clock in the break room next to dock 12.

## Marrow Bay port office

The Marrow Bay office is on the second floor of the Pier Road 7 building. It
has no canteen, but a shared kitchen with a fridge and coffee machine. Staff
parking is in the public car park at Pier Road, paid by Altavia with a parking
card from the office manager.

## Reporting a facilities problem

Broken heating, lights, lifts, coffee machines or furniture are reported to
the Facilities desk on extension 2500 or by email to
facilities@altavia-logistics.example. Urgent problems outside office hours
(water leaks, power cuts) go to the security desk on extension 2900.

## House rules

- Smoking is only allowed in the smoking shelter next to car park P2.
- Pets are not allowed in any building, except assistance dogs.
- Used batteries, toner cartridges and small electronics can be dropped off
  at the recycling point next to the Building A reception.
"""

HANDBOOK["security-badges.md"] = """\
# Security and Badges

Every person on an Altavia site must wear a visible badge. This chapter
explains badge types, visitor rules and what to do when a badge is lost.

## Badge types

| Colour | Who | Access |
| --- | --- | --- |
| Blue | Employees | Offices at all sites, according to role |
| Green | Contractors | Areas listed on the contractor permit, valid for at most 60 days |
| Orange | Visitors | Only when escorted by their host |

A red stripe on a badge gives access to the warehouse zones at the Tolvik
hub. Warehouse access requires the safety induction described in the
warehouse safety chapter.

Your badge is also used to release print jobs on office printers and to pay
in the canteen.

## Visitors

1. The host registers the visitor with reception at least one working day in
   advance.
2. On arrival, visitors sign in at the Building A reception and show photo
   ID. They receive an orange visitor badge.
3. The host collects the visitor at reception and accompanies them at all
   times.
4. When leaving, visitors hand in their badge. Visitor badges are collected
   at gate B, where the guard checks them out of the system.

Visitors to the Tolvik warehouse zones must also wear a hi-vis vest, which
reception hands out with the badge.

## Lost or stolen badges

Report a lost or stolen badge to the security desk on extension 2900 within
24 hours, even outside office hours. The badge is blocked immediately. A
replacement is ready for collection at the Building A reception on the next
working day. The first replacement is free; a second replacement within
12 months costs 25 EUR.

## Security desk

The security desk at gate A in Brennsby is staffed 24 hours a day, 7 days a
week, on extension 2900. Call it for lost badges, suspicious people on site,
forgotten badges at the weekend and any urgent security or safety incident.
In Tolvik the gatehouse at gate C has the same role.

## Rules for everyone

- Wear your badge visibly above the waist.
- Do not let other people follow you through a door you opened with your
  badge (no tailgating), even if you know them.
- Never lend your badge to anyone.
- Challenge people without a badge politely, or call the security desk.
- Keep doors to warehouse zones and server rooms closed.

## Photography

Taking photos or videos in the warehouse zones and at the docks is only
allowed with a photo permit from the security desk, because customer goods
and shipping labels may be visible.
"""

HANDBOOK["travel-safety.md"] = """\
# Travel Safety

Altavia employees travel to customers, trade fairs, ports and partner depots.
This chapter explains how we keep travellers safe. Costs, allowances and
advances are covered in the Finance chapter.

## Before you travel

- Register every trip abroad in the TripGuard app at least 3 working days
  before departure. TripGuard stores your itinerary so that the Travel
  Security Desk can reach you if something happens at your destination.
- Check the destination's risk level in TripGuard. Destinations are rated
  from level 1 (low) to level 4 (very high).
- Trips to level 3 or level 4 destinations need written approval from the
  Head of Security, Aksel Brandt, at least 14 days before departure.
- Make sure your Altavia Verify app and company phone work abroad before you
  leave.

## Travel insurance

All business trips are covered by the company travel insurance, policy number
ALT-TRV-118. Your digital insurance card is in TripGuard. The insurance
covers medical treatment, emergency transport home and lost luggage.

## During the trip

- In level 2 destinations and above, check in once a day in TripGuard.
- Keep your phone charged and carry a printed copy of your hotel address.
- Travelling alone to trade fairs and customers is fine in level 1 and
  level 2 destinations. For level 3 destinations, travel in pairs.
- Do not leave laptops, phones or documents unattended in cars, even for a
  short time.

## Driving

- On business trips, drive no more than 9 hours per day and take a break of
  at least 15 minutes every 2 hours.
- Every company car carries a first aid kit, a warning triangle and two
  hi-vis vests.
- Do not hold a phone while driving, and keep hands-free calls short.

## Emergencies

1. In a medical or safety emergency, first call the local emergency services
   (112 in the European Union).
2. Then call the Altavia Travel Security Desk, available 24/7 at
   +800 2582 4242. They help with doctors, hospitals, rebooking and getting
   you home.
3. Inform your manager as soon as you can.

If you lose your passport, contact the nearest embassy of your country and
the Travel Security Desk; they will help with replacement documents.

## After the trip

Report any security incident, such as theft or a threatening situation, in
TripGuard within 48 hours of your return, even if nobody was hurt. These
reports help us update the risk levels for other colleagues.
"""

HANDBOOK["company-history.md"] = """\
# Company History

## How it began

Altavia Logistics was founded in 1987 in Brennsby by Ingrid Solberg and
Tomas Reuter. They started with three second-hand trucks and a rented
warehouse on the Quayside, moving timber and machine parts for local
companies. The name comes from the Latin "alta via", the high road, because
the founders wanted to offer the straightest route between shippers and
their customers.

## Milestones

| Year | Milestone |
| --- | --- |
| 1987 | Founded in Brennsby with three trucks and five employees |
| 1994 | Opening of the Tolvik hub, our first own cross-dock warehouse |
| 2003 | First rail freight contract on the Brennsby-Tolvik corridor |
| 2009 | The fleet passes 250 trucks |
| 2011 | Opening of the Marrow Bay port office for sea freight and customs |
| 2016 | Move into the current headquarters campus at Quayside 14 |
| 2020 | Maren Voss becomes CEO, succeeding co-founder Ingrid Solberg |
| 2022 | Solar roof completed on the Tolvik hub |
| 2023 | First electric trucks join the fleet |

## Altavia today

Today Altavia Logistics employs about 2,150 people at three sites and runs a
fleet of 610 trucks. The company moves around 4.8 million pallets a year for
customers in retail, manufacturing and food. Annual revenue is about
480 million EUR.

The company is still privately owned. The Solberg and Reuter families hold
the majority of shares; since 2018 employees can buy shares through the
"Crew Share" programme.

## Leadership

- **CEO:** Maren Voss (since 2020)
- **CFO:** Jonas Ekdahl (since 2017)
- **COO:** Priya Natarajan (since 2021)
- **Head of Security:** Aksel Brandt

## Our motto and values

Our motto is "Every pallet, every promise." It goes back to Tomas Reuter, who
painted it on the door of the first warehouse. Our three values are:

1. **Reliable:** we deliver what we promise, on time.
2. **Safe:** nobody gets hurt for a delivery.
3. **Fair:** to customers, drivers, colleagues and the places we work in.

## Traditions

Every year in September the whole company meets for Founders' Day at the
Tolvik hub, with a barbecue, a truck parade and the Golden Pallet award for
the team of the year. Employees who reach 25 years of service are invited to
a dinner with the CEO and receive a model of the original 1987 truck.
"""

HANDBOOK["sustainability.md"] = """\
# Sustainability

Freight transport causes a large share of emissions, so sustainability is
part of how we plan every route. Our programme is called GreenLane.

## Targets

- Cut CO2 emissions per tonne-kilometre by 40% by 2030, compared with 2019.
- Reach net zero emissions across all sites and the fleet by 2045.
- Operate 200 electric trucks by 2028.

Progress is published every October in the Altavia sustainability report.

## Fleet

- Altavia runs 85 electric trucks today, mainly on regional routes around
  Brennsby and Tolvik. They charge at the Tolvik depot, which has
  24 high-power chargers.
- Since 2022 the diesel trucks that fill up at our own Tolvik fuel station
  run on HVO100, a renewable diesel made from waste oils.
- All drivers take an eco-driving course every two years. Telematics show
  each driver their fuel use per 100 km.
- Where possible, long-distance freight moves by rail on the Brennsby-Tolvik
  corridor.

## Buildings and energy

- The solar roof on the Tolvik hub has a peak output of 4.2 MW and covers
  about 60% of the hub's electricity.
- Brennsby headquarters buys 100% certified green electricity.
- All warehouse lighting was switched to LED with motion sensors in 2021.

## Packaging and waste

- LoopPallet is our reusable pallet programme: customers return pallets to
  the nearest Altavia site, and 92% of pallets come back into use.
- The recycling rate at our hubs is 88%. Stretch film is collected separately
  and turned into new film by a recycling partner.
- Canteens avoid single-use cups; reusable cups cost a 1 EUR deposit.

## What you can do

- Use the bike shelters and showers at Brennsby headquarters, or a leased
  bike (see the HR chapter).
- Charge electric cars at the chargers in car park P2.
- Switch off screens and lights when you leave.
- Suggest ideas to the GreenLane team at greenlane@altavia-logistics.example.
  Every quarter the best idea wins a 200 EUR donation to a charity of the
  winner's choice.
"""

HANDBOOK["warehouse-safety.md"] = """\
# Warehouse and Yard Safety

This chapter applies to everyone who enters the warehouse zones or yards, at
Tolvik, Brennsby or Marrow Bay, including office staff on a short visit.

## Personal protective equipment

- A hi-vis vest of class 2 or higher is mandatory in all yards, loading
  areas and warehouse halls.
- Safety shoes of class S3 are required in the warehouse halls. Visitors who
  stay on the marked walkways may wear their own closed shoes.
- Hard hats are required in the high-bay racking area of the Tolvik hub.

## Traffic on site

- The speed limit for all vehicles on Altavia sites is 10 km/h, and 5 km/h
  inside the halls.
- Pedestrians use the green marked walkways only and cross at marked
  crossings.
- Never walk behind a reversing truck or under a raised load.

## Forklifts and equipment

Only trained staff with a valid Altavia forklift licence may drive forklifts
or reach trucks. The licence is renewed every 3 years with a half-day
refresher run by the site safety team. Each vehicle gets a pre-shift check
recorded on the checklist at the charging station.

## Safety induction

Everyone who needs access to the warehouse zones completes a 90-minute safety
induction on their first day at the site. Only after the induction does the
security desk add the red warehouse stripe to the badge.

## Stop Card

Every employee carries a Stop Card. If you see unsafe work, you have the
right and the duty to stop it, no matter who is doing it. Nobody will be
blamed for using the Stop Card in good faith.

## First aid and emergencies

- First aiders wear green helmets and are on every shift.
- First aid kits hang next to every second dock door. Defibrillators (AED)
  are at the Tolvik gatehouse and at the Brennsby reception in Building A.
- When the fire alarm sounds, leave by the nearest exit. The assembly point
  in Brennsby is car park P1; in Tolvik it is assembly point 2 next to gate C.

## Reporting accidents

Report every accident and near miss within 24 hours in SafeLog, the safety
reporting form on the intranet, or to the shift supervisor. Near misses count
too: they help us prevent the next accident.
"""

# (question, file that answers it, key that the right passage contains)
RETRIEVAL_PROBES = [
    ("When does the Brennsby canteen open?", "facilities-and-offices.md", "07:30"),
    ("What is the postcode of the headquarters?", "facilities-and-offices.md", "48217"),
    ("How many parking spaces does car park P2 have?", "facilities-and-offices.md", "160"),
    ("Where are visitor badges collected when visitors leave?", "security-badges.md", "gate B"),
    ("What does a replacement badge cost the second time?", "security-badges.md", "25 EUR"),
    ("How long is a contractor badge valid at most?", "security-badges.md", "60 days"),
    ("Which app do I register trips abroad in?", "travel-safety.md", "TripGuard"),
    ("What is the travel insurance policy number?", "travel-safety.md", "ALT-TRV-118"),
    ("What is the 24/7 travel emergency number?", "travel-safety.md", "+800 2582 4242"),
    ("Who founded Altavia Logistics?", "company-history.md", "Ingrid Solberg"),
    ("In which year was the Marrow Bay office opened?", "company-history.md", "2011"),
    ("What is the company motto?", "company-history.md", "Every pallet, every promise"),
    ("What is our CO2 reduction target for 2030?", "sustainability.md", "40%"),
    ("How big is the solar roof on the Tolvik hub?", "sustainability.md", "4.2 MW"),
    ("What is the reusable pallet programme called?", "sustainability.md", "LoopPallet"),
    ("What is the speed limit on the warehouse site?", "warehouse-safety.md", "10 km/h"),
    ("How often is the forklift licence renewed?", "warehouse-safety.md", "every 3 years"),
    ("Where is the fire assembly point in Tolvik?", "warehouse-safety.md", "assembly point 2"),
]
